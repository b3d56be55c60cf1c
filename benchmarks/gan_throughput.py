"""GAN training throughput: this project's default vs TensorFlow's DCGAN tutorial, same run.

Prints images/second (median of --repeats timed runs of --steps steps each, after a warm-up
that traces and compiles) for both configurations and the ratio. Real MNIST images are
used (MNIST_NPZ or the Keras download), though throughput does not depend on pixel values.

  python benchmarks/gan_throughput.py --steps=60 --repeats=5
"""

import statistics
import time

import keras
import tensorflow as tf
from absl import app, flags

from gan.model import GAN, build_networks
from gan.train import TrainConfig, mnist_for_gan

flags.DEFINE_integer("steps", 60, "Training steps per timed run.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Timed runs per configuration (the median is reported).", lower_bound=1)
FLAGS = flags.FLAGS

CONFIGURATIONS = {
    # name: (architecture, noise_dim, num_classes, batch_size, learning_rate, beta_1, jit_compile)
    # The default is conditioned on its clusters (the digit labels stand in: speed is the same).
    "project default": (TrainConfig.architecture, TrainConfig.noise_dim, TrainConfig.clusters, TrainConfig.batch_size,
                        TrainConfig.g_learning_rate, TrainConfig.beta_1, TrainConfig.jit_compile),
    "TF DCGAN tutorial": ("tf_tutorial", 100, None, 256, 1e-4, 0.9, False),
}


def images_per_second(images, labels, architecture, noise_dim, num_classes, batch_size, learning_rate, beta_1, jit_compile):
    generator, discriminator = build_networks(architecture, noise_dim, num_classes)
    gan = GAN(generator, discriminator, seed=0)
    gan.compile(keras.optimizers.Adam(learning_rate, beta_1=beta_1), keras.optimizers.Adam(learning_rate, beta_1=beta_1),
                jit_compile=jit_compile)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(batch_size, drop_remainder=True).prefetch(4)
    gan.fit(data, steps_per_epoch=5, epochs=1, shuffle=False, verbose=0)  # Trace and compile.
    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        gan.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, shuffle=False, verbose=0)
        rates.append(FLAGS.steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates), rates


def main(_):
    images, labels = mnist_for_gan(TrainConfig())
    results = {}
    for name, settings in CONFIGURATIONS.items():
        median, rates = images_per_second(images, labels, *settings)
        results[name] = median
        print(f"{name:20s} {median:8.0f} images/s  (runs: {', '.join(f'{r:.0f}' for r in rates)})", flush=True)
    ratio = results["project default"] / results["TF DCGAN tutorial"]
    print(f"ratio (project / tutorial): {ratio:.2f}x")
    print(f"one 60,000-image epoch: project {60000 / results['project default']:.0f} s, "
          f"tutorial {60000 / results['TF DCGAN tutorial']:.0f} s")


if __name__ == "__main__":
    app.run(main)
