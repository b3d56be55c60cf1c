"""Trains the DCGAN on MNIST and writes samples, plots, logs and the generator.

  genlab-train-gan --output_dir=runs/gan --epochs=10
  genlab-train-gan --output_dir=runs/cgan --conditional --mnist_path=../shared/data/mnist.npz

Run the same command again after an interruption to resume. The flags used are saved as
OUTPUT_DIR/flags.txt, so `--flagfile=OUTPUT_DIR/flags.txt` repeats a run.
"""

import os

from absl import flags

from genlab.files import check_output_path
from scripts.common_flags import define_common_flags, flagfile_text, run_program
from scripts.gan_flags import define_gan_flags, gan_config_from_flags

define_common_flags()
define_gan_flags()
flags.DEFINE_string("output_dir", "runs/gan", "Where samples, plots, logs, checkpoints and the generator go.")
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")  # Before TensorFlow loads: a wrong path answers at once.
    from gan.train import train
    from genlab.distribute import is_chief

    config = gan_config_from_flags(FLAGS)
    result = train(config, FLAGS.output_dir, files={"flags.txt": flagfile_text(FLAGS)})
    if not is_chief():
        print(
            f"Worker done: trained {result.epochs_done} epochs in {result.seconds:.0f} s; the chief wrote the outputs."
        )
        return
    print(
        f"Trained {result.epochs_done} epochs in {result.seconds:.0f} s. Outputs in "
        f"{os.path.abspath(FLAGS.output_dir)}:"
    )
    print("  generator.keras, samples/ and samples.gif, loss_curves.png, history.csv, tensorboard/")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
