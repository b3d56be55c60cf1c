"""Synthetic X-ray datasets with KerasCV's Stable Diffusion.

Bottom to top (each module imports only those above it in this list):

- `xray.networks`: KerasCV's three networks, built untrained.
- `xray.prompts`: the classes and their prompts (built-in, or a JSON/YAML file).
- `xray.config`: `XrayConfig` and the names of the weight sources and precisions (no TensorFlow).
- `xray.sampler`: text encoding and our DDIM loop (per-image noise, batched guidance).
- `xray.bridge`: reads a diffusers SD 1.x checkpoint and maps its tensors onto KerasCV's layers.
- `xray.keras_cv_files`: KerasCV's weight files: names, writing, converting a checkpoint.
- `xray.weights`: the four weight sources and `load_stable_diffusion`.
- `xray.dataset`: the folder on disk: image plan, seeds, shards, PNG metadata, index, grid.
- `xray.generate`: `generate_dataset`, the orchestrator `genlab-xray` calls.
"""
