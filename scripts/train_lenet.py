"""Trains LeNet-5 on MNIST; writes the model, its test accuracy and confusion matrix.

genlab-train-lenet --model_path=runs/lenet/lenet.keras
"""

from absl import flags

from genlab.files import check_output_path
from lenet.config import LeNetConfig
from scripts.common_flags import define_common_flags, positive, run_program

_DEFAULTS = LeNetConfig()
define_common_flags()
flags.DEFINE_string(
    "model_path", "runs/lenet/lenet.keras", "Where the trained model goes (.keras); metrics and figure beside it."
)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Passes over the training set.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per step.", lower_bound=1)
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam's peak learning rate (cosine decay to 0).")
flags.DEFINE_bool("augment", _DEFAULTS.augment, "Random shifts of training digits (up to 2 pixels).")
flags.DEFINE_integer(
    "num_train_images", _DEFAULTS.num_train_images, "Train on the first N images (0: all 60,000).", lower_bound=0
)
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "Compile training with XLA.")
positive("learning_rate")
FLAGS = flags.FLAGS


def config_from_flags():
    return LeNetConfig(
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        augment=FLAGS.augment,
        seed=FLAGS.seed,
        num_train_images=FLAGS.num_train_images,
        jit_compile=FLAGS.jit_compile,
        mnist_path=FLAGS.mnist_path,
    )


def main():
    check_output_path(FLAGS.model_path, "--model_path", folder=False)  # Before TensorFlow loads.
    from lenet.train import sidecar_paths, train

    result = train(config_from_flags(), FLAGS.model_path)
    metrics_path, confusion_path = sidecar_paths(FLAGS.model_path)
    print(f"LeNet-5: {result.test_accuracy:.2%} MNIST test accuracy after {result.seconds:.0f} s of training.")
    print(f"  model: {FLAGS.model_path}\n  metrics: {metrics_path}\n  confusion matrix: {confusion_path}")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
