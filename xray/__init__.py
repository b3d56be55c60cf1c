"""Synthetic X-ray datasets with KerasCV's Stable Diffusion: adapt it, generate, judge.

Five layers, bottom to top; a layer imports only from the layers below it, and the three
applications on top never import each other (tests/test_layering.py holds this):

1. `xray.config` and `xray.data`: settings, the classes and their prompts, users' image folders,
   public X-ray sets (`genlab-xray-data`). No TensorFlow (Keras only to download).
2. `xray.sd`: KerasCV's Stable Diffusion networks, built untrained, the DDIM sampler, and
   attention in query chunks.
3. `xray.formats`: weight files on disk: safetensors, diffusers checkpoints (the bridge),
   KerasCV's weight files, LoRA files, export to diffusers.
4. `xray.weights`: the four weight sources, loaded into networks (LoRA merged in).
5. The applications:
   - `xray.generation`: the dataset folder and `generate_dataset` (`genlab-xray`), from text or
     by varying real images;
   - `xray.training`: LoRA or whole-U-Net fine-tuning (`genlab-xray-finetune`), with its
     training kernels (`xray.training.kernels`, which import nothing else of the project but
     `xray.sd.attention`, whose forward pass they share);
   - `xray.judging`: synthetic against real images, and whether they help (`genlab-xray-judge`).
"""
