"""Synthetic X-ray datasets with KerasCV Stable Diffusion (issue 4; not built yet)."""
