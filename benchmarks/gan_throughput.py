"""GAN training throughput: this project's default vs TensorFlow's DCGAN tutorial, same run.

Prints images/second (median of --repeats timed runs of --steps steps each, after a warm-up
that traces and compiles) for both, and the ratio. Each side runs its own train step: the
project's `GAN` with today's defaults (cluster conditioning, weight averaging), and the
tutorial's (`benchmarks/tutorial_dcgan.py`). Real MNIST images are used (MNIST_NPZ or the
Keras download), though throughput does not depend on pixel values.

  python benchmarks/gan_throughput.py --steps=60 --repeats=5
"""

import statistics
import time

import tensorflow as tf
from absl import app, flags
from machine import describe_machine
from tutorial_dcgan import SETTINGS, build_tutorial

from gan.config import TrainConfig
from gan.model import GAN, build_networks
from gan.train import make_optimizers, mnist_for_gan

flags.DEFINE_integer("steps", 60, "Training steps per timed run.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Timed runs per configuration (the median is reported).", lower_bound=1)
FLAGS = flags.FLAGS


def build_project():
    """The project's default GAN; its clusters' ids are stood in for by the digit labels (same speed)."""
    config = TrainConfig()
    generator, discriminator = build_networks(config.architecture, config.noise_dim, config.clusters)
    gan = GAN(generator, discriminator, seed=0, averaging_decay=config.averaging_decay)
    gan.compile(*make_optimizers(config), jit_compile=config.jit_compile)
    return gan, config.batch_size


def images_per_second(model, batch_size, images, labels):
    data = (
        tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(batch_size, drop_remainder=True).prefetch(4)
    )
    model.fit(data, steps_per_epoch=5, epochs=1, shuffle=False, verbose=0)  # Trace and compile.
    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, shuffle=False, verbose=0)
        rates.append(FLAGS.steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates), rates


def main(_):
    print(describe_machine())
    images, labels = mnist_for_gan(TrainConfig())
    results = {}
    for name, (model, batch_size) in {
        "project default": build_project(),
        "TF DCGAN tutorial": (build_tutorial(), SETTINGS["batch_size"]),
    }.items():
        median, rates = images_per_second(model, batch_size, images, labels)
        results[name] = median
        print(
            f"{name:20s} batch {batch_size:3d} {median:8.0f} images/s  (runs: {', '.join(f'{r:.0f}' for r in rates)})",
            flush=True,
        )
    ratio = results["project default"] / results["TF DCGAN tutorial"]
    print(f"ratio (project / tutorial): {ratio:.2f}x")
    print(
        f"one 60,000-image epoch: project {60000 / results['project default']:.0f} s, "
        f"tutorial {60000 / results['TF DCGAN tutorial']:.0f} s"
    )


if __name__ == "__main__":
    app.run(main)
