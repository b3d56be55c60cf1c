"""The whole MNIST lab in one command: train the GAN, train (or reuse) LeNet, generate,
classify, sort, report.

  genlab-mnist-lab --output_dir=runs/lab                  # the default budget, a first look on a laptop
  genlab-mnist-lab --output_dir=runs/lab --gan_epochs=10 --gan_conditional

Outputs: OUTPUT_DIR/gan (see genlab-train-gan), OUTPUT_DIR/lenet/lenet.keras (unless
--classifier names an existing one), OUTPUT_DIR/sorted (see genlab-sort-digits). Run the
same command again after an interruption: GAN training resumes, a trained LeNet is reused,
and the sorted folder is rebuilt.
"""

import dataclasses
import os

from absl import flags

from genlab.files import check_output_path, write_text
from genlab.mnist import load_mnist
from lenet.config import LeNetConfig
from scripts.common_flags import define_common_flags, flagfile_text, run_program
from scripts.gan_flags import define_gan_flags, gan_config_from_flags

define_common_flags()
define_gan_flags(prefix="gan_")
flags.DEFINE_string("output_dir", "runs/lab", "Folder for everything the lab writes.")
flags.DEFINE_string(
    "classifier", "", "An existing LeNet .keras to reuse (default: OUTPUT_DIR/lenet/lenet.keras, trained if absent)."
)
flags.DEFINE_integer("lenet_epochs", LeNetConfig.epochs, "LeNet training epochs.", lower_bound=1)
flags.DEFINE_integer("count", 1000, "Digits to generate and sort.", lower_bound=1)
flags.DEFINE_float(
    "min_confidence", 0.0, "Digits LeNet is less sure of go to sorted/uncertain.", lower_bound=0.0, upper_bound=1.0
)
FLAGS = flags.FLAGS


def main():
    out = FLAGS.output_dir
    check_output_path(out, "--output_dir")
    load_mnist(FLAGS.mnist_path or None)  # A missing or malformed MNIST file stops the lab before anything is created.
    from gan.train import train as train_gan
    from lenet.train import train as train_lenet
    from mnist_lab.judge import format_summary, judge_generator

    print("== 1/3 Training the GAN")
    gan_config = gan_config_from_flags(FLAGS, prefix="gan_")
    gan_dir = os.path.join(out, "gan")
    train_gan(gan_config, gan_dir)  # Checks its settings before it creates OUTPUT_DIR/gan.
    write_text(os.path.join(out, "flags.txt"), flagfile_text(FLAGS))

    classifier = FLAGS.classifier or os.path.join(out, "lenet", "lenet.keras")
    if os.path.exists(classifier):
        print(f"== 2/3 Reusing the trained LeNet at {classifier}")
    else:
        print("== 2/3 Training LeNet-5")
        lenet_config = dataclasses.replace(
            LeNetConfig(), epochs=FLAGS.lenet_epochs, seed=FLAGS.seed, mnist_path=FLAGS.mnist_path
        )
        result = train_lenet(lenet_config, classifier)
        print(f"LeNet-5 test accuracy: {result.test_accuracy:.2%}")

    print("== 3/3 Generating, classifying and sorting")
    sorted_dir = os.path.join(out, "sorted")
    summary = judge_generator(
        os.path.join(gan_dir, "generator.keras"),
        classifier,
        sorted_dir,
        count=FLAGS.count,
        seed=FLAGS.seed,
        min_confidence=FLAGS.min_confidence,
        overwrite=True,
        mnist_path=FLAGS.mnist_path,
    )
    print(format_summary(summary))
    print(f"\nEverything is in {os.path.abspath(out)}:")
    print(
        "  gan/samples.gif, gan/loss_curves.png   how training went\n  lenet/                                 the "
        "judge and its confusion matrix"
    )
    print(
        "  sorted/0..9, sorted/predictions.csv    the generated digits by label\n  sorted/summary.json, sorted/*.png  "
        "    quality metrics and figures"
    )


def run():
    run_program(main)


if __name__ == "__main__":
    run()
