"""Trains and publishes a new version of the reference judge that MNIST metrics are measured with.

  python -m scripts.make_reference_judge --version=v2 --mnist_path=mnist.npz

A maintainer's tool, run once per version: the weights and their record land in `lenet/`
and are committed. Published versions are never replaced.
"""

import dataclasses
import platform
import tempfile

from absl import flags

from lenet.config import LeNetConfig
from scripts.common_flags import define_common_flags, run_program

define_common_flags()
flags.DEFINE_string(
    "version", None, "The version to write, e.g. v2; published versions are never replaced (lenet/reference.py)."
)
flags.mark_flag_as_required("version")
FLAGS = flags.FLAGS


def main():
    import keras
    import tensorflow as tf

    from lenet import reference
    from lenet.train import train

    config = dataclasses.replace(LeNetConfig(), seed=FLAGS.seed, mnist_path=FLAGS.mnist_path)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, f"{tmp}/lenet.keras")
    config_record = dict(dataclasses.asdict(config), mnist_path="")  # A local path means nothing to others.
    record = {
        "test_accuracy": result.test_accuracy,
        "config": config_record,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    weights_path, record_path = reference.save_reference_judge(result.model, FLAGS.version, record)
    print(
        f"Reference judge {FLAGS.version}: {result.test_accuracy:.2%} MNIST test accuracy\n  {weights_path}\n  "
        f"{record_path}"
    )


def run():
    run_program(main)


if __name__ == "__main__":
    run()
