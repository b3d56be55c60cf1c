"""KerasCV's Stable Diffusion 1.x networks, built untrained, and the DDIM sampler that runs them."""
