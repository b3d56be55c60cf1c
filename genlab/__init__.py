"""Pieces shared by the GAN, LeNet and X-ray labs: each concept lives here once.

- `genlab.errors`: `UserError`, the one exception a script turns into a one-line message.
- `genlab.mnist`: the MNIST loader (Keras download or a local `.npz`).
- `genlab.files`: atomic file writing.
- `genlab.plots`: image grids and curve plots.

Seeding is `keras.utils.set_random_seed`, called once by each entry point.
"""
