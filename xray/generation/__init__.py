"""Generation: the dataset folder on disk and the orchestrator genlab-xray calls."""
