"""DCGAN on MNIST. It never imports LeNet: judging the digits is `mnist_lab`'s job.

- `gan.model`: the generator, the discriminator and `GAN`, whose `train_step` trains them.
- `gan.clusters`: k-means clusters of the training images, and the sampler that picks one from noise.
- `gan.callbacks`: grids, history, checkpoints and the NaN guard, kept out of `train_step`.
- `gan.train`: `train(TrainConfig(...), output_dir)`, resumable, with every output on disk.
- `gan.sampling`: `load_generator(path)` and `sample_digits(generator, n)`.
"""
