"""Generates digits with a trained GAN, classifies them with LeNet, sorts them into folders.

  genlab-sort-digits --generator=runs/gan/generator.keras \
      --classifier=runs/lenet/lenet.keras --output_dir=runs/sorted --count=1000

Writes OUTPUT_DIR/0..9 (and uncertain/ with --min_confidence), predictions.csv,
summary.json and figures; prints the quality metrics beside real MNIST's.
"""

import os

from absl import flags

from genlab.files import check_output_path
from scripts.common_flags import define_common_flags, run_program

define_common_flags()
flags.DEFINE_string("generator", "runs/gan/generator.keras", "Trained generator (.keras) from genlab-train-gan.")
flags.DEFINE_string("classifier", "runs/lenet/lenet.keras", "Trained LeNet (.keras) from genlab-train-lenet.")
flags.DEFINE_string("output_dir", "runs/sorted", "Where the sorted folders, CSV, summary and figures go.")
flags.DEFINE_integer("count", 1000, "How many digits to generate.", lower_bound=1)
flags.DEFINE_float(
    "min_confidence", 0.0, "Images LeNet is less sure of go to OUTPUT_DIR/uncertain.", lower_bound=0.0, upper_bound=1.0
)
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir (otherwise refused).")
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")  # Before TensorFlow loads.
    from mnist_lab.judge import format_summary, judge_generator

    summary = judge_generator(
        FLAGS.generator,
        FLAGS.classifier,
        FLAGS.output_dir,
        count=FLAGS.count,
        seed=FLAGS.seed,
        min_confidence=FLAGS.min_confidence,
        overwrite=FLAGS.overwrite,
        mnist_path=FLAGS.mnist_path,
    )
    print(format_summary(summary))
    print(f"Sorted digits, predictions.csv, summary.json and figures in {os.path.abspath(FLAGS.output_dir)}")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
