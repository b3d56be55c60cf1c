"""DCGAN on MNIST.

- `gan.model`: the generator, the discriminator and `GAN`, whose `train_step` trains them.
- `gan.train`: `train(TrainConfig(...), output_dir)`, resumable, with every output on disk.
- `gan.sampling`: `load_generator(path)` and `sample_digits(generator, n)`.
"""
