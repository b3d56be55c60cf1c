"""Synthetic X-ray datasets with KerasCV's Stable Diffusion: adapt it, generate, judge.

Bottom to top (each module imports only those above it in this list):

- `xray.networks`: KerasCV's networks (generation's three, and the VAE encoder), built untrained.
- `xray.normalization`: layer and group normalization (and a swish after it) for training, keeping only their input
  for the backward pass.
- `xray.convolution`: a frozen convolution's input gradient as one matrix product with its kernel as stored.
- `xray.attention`: attention, GEGLU and ResBlock for training, computing again in the backward pass what
  TensorFlow would keep; `recompute_in_backward` puts them, the normalizations and the convolutions' gradient
  into a U-Net.
- `xray.prompts`: the classes and their prompts (built-in, or a JSON/YAML file).
- `xray.image_folder`: users' class-folder image sets (8/16-bit grayscale or RGB, PNG or JPEG).
- `xray.config`: `XrayConfig`, `FinetuneConfig`, `JudgeConfig` and their choices (no TensorFlow).
- `xray.safetensors_file`: the safetensors layout, read and written a tensor at a time (no file mapping).
- `xray.sampler`: text encoding and our DDIM loop (per-image noise, batched guidance).
- `xray.bridge`: reads a diffusers SD 1.x checkpoint and maps its tensors onto KerasCV's layers.
- `xray.keras_cv_files`: KerasCV's weight files: names, writing (adapters merged in), converting a checkpoint.
- `xray.lora`: LoRA adapters on KerasCV's networks, saved in diffusers' PEFT layout; merging.
- `xray.optimizer`: AdamW for many small variables, in a fraction of Keras's graph.
- `xray.export`: KerasCV's weights back to a diffusers checkpoint folder.
- `xray.weights`: the four weight sources, `load_stable_diffusion` (LoRA merged in) and the VAE encoder.
- `xray.dataset`: the folder on disk: image plan, seeds, shards, PNG metadata, index, grid.
- `xray.generate`: `generate_dataset`, the orchestrator `genlab-xray` calls.
- `xray.finetune`: `finetune`, LoRA or whole-U-Net training on a user's images (`genlab-xray-finetune`).
- `xray.judge`: `judge_dataset`, synthetic against real: a classifier's accuracy, FID/KID
  with the real floor, train on synthetic / test on real (`genlab-xray-judge`).
"""
