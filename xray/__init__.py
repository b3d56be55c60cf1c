"""Synthetic X-ray datasets with KerasCV's Stable Diffusion.

prompts (classes and their prompts) -> weights (where the networks' weights come from;
bridge for diffusers checkpoints) -> sampler (DDIM over KerasCV's networks) -> dataset
(the folder on disk) -> generate (the orchestrator the `genlab-xray` script calls).
"""
