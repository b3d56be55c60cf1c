"""Fine-tuning Stable Diffusion on a user's images: LoRA adapters or the whole U-Net."""
