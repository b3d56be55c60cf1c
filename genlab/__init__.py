"""Pieces shared by the GAN, LeNet and X-ray labs: each concept lives here once.

The bottom layer: nothing here imports a lab (`gan`, `lenet`, `xray`, `mnist_lab`) or a program.

- `genlab.errors`: `UserError`, the one exception a program turns into a one-line message.
- `genlab.files`: atomic file writing (files get the mode `open()` would give), CSV and JSON.
- `genlab.images`: float images to uint8.
- `genlab.noise`: seeded Gaussian noise, the same on every machine.
- `genlab.metrics`: FID and KID between two feature sets, whichever network made them.
- `genlab.mnist`: the MNIST loader (Keras download or a local `.npz`) and `NUM_CLASSES`.
- `genlab.plots`: image grids, curves, bars, histograms, confusion matrices, tables, GIFs.
- `genlab.distribute`: `tf.distribute` strategies by name.
- `genlab.runtime`: what a Colab runtime has (TPU, GPU memory) and how each lab should use it.

Seeding is `keras.utils.set_random_seed`, called once by each entry point.
"""
