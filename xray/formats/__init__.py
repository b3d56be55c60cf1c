"""Weight files on disk: safetensors, diffusers checkpoints (the bridge), KerasCV's weight files, LoRA files, export."""
