"""Generation: the dataset folder on disk, image-to-image's sources, and the orchestrator genlab-xray calls."""
