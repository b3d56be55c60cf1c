"""The GAN's flags, definable with a prefix so the end-to-end lab can hold them beside LeNet's."""

import dataclasses

from absl import flags

from gan.config import ARCHITECTURES, TrainConfig
from scripts.common_flags import positive

_DEFAULTS = TrainConfig()


def define_gan_flags(prefix=""):
    p = prefix
    flags.DEFINE_integer(f"{p}epochs", _DEFAULTS.epochs, "Passes over the training images.", lower_bound=1)
    flags.DEFINE_integer(
        f"{p}batch_size", _DEFAULTS.batch_size, "Images per step (global, across replicas).", lower_bound=1
    )
    flags.DEFINE_integer(f"{p}noise_dim", _DEFAULTS.noise_dim, "Length of the generator's noise vector.", lower_bound=1)
    flags.DEFINE_enum(
        f"{p}architecture",
        _DEFAULTS.architecture,
        list(ARCHITECTURES),
        "Network sizes: the project's default or TensorFlow's DCGAN tutorial.",
    )
    flags.DEFINE_bool(f"{p}conditional", _DEFAULTS.conditional, "Class-conditional GAN: both nets see the digit label.")
    flags.DEFINE_integer(
        f"{p}clusters",
        _DEFAULTS.clusters,
        "Unconditional runs: both nets see which of this many k-means clusters of the training "
        "images (no labels) an image is in, and sampling picks clusters by their share; 0: plain DCGAN. "
        "A small training set gets fewer, so that each holds 30 images on average.",
        lower_bound=0,
    )
    flags.DEFINE_float(f"{p}g_learning_rate", _DEFAULTS.g_learning_rate, "Generator's Adam learning rate.")
    flags.DEFINE_float(f"{p}d_learning_rate", _DEFAULTS.d_learning_rate, "Discriminator's Adam learning rate.")
    flags.DEFINE_float(f"{p}beta_1", _DEFAULTS.beta_1, "Adam beta_1 for both optimizers, in [0, 1).")
    flags.DEFINE_bool(
        f"{p}fused_adam",
        _DEFAULTS.fused_adam,
        "Adam in TensorFlow's fused kernel: Adam's update with less memory traffic. "
        f"--no{p}fused_adam runs Keras's own Adam (to debug, or if a TensorFlow release moves the kernel).",
    )
    flags.DEFINE_float(
        f"{p}real_label", _DEFAULTS.real_label, "Target for real images; below 1 is one-sided label smoothing."
    )
    flags.DEFINE_float(
        f"{p}averaging_decay",
        _DEFAULTS.averaging_decay,
        "Samples and the saved generator use this exponential moving average of the generator's "
        "weights, in [0, 1); 0 keeps the latest weights.",
    )
    flags.DEFINE_integer(
        f"{p}num_train_images",
        _DEFAULTS.num_train_images,
        "Train on the first N MNIST images (0: all 60,000).",
        lower_bound=0,
    )
    flags.DEFINE_bool(f"{p}jit_compile", _DEFAULTS.jit_compile, "Compile the train step with XLA.")
    positive(f"{p}g_learning_rate")
    positive(f"{p}d_learning_rate")
    flags.register_validator(f"{p}beta_1", lambda v: 0 <= v < 1, message=f"--{p}beta_1 must be in [0, 1)")
    flags.register_validator(
        f"{p}averaging_decay", lambda v: 0 <= v < 1, message=f"--{p}averaging_decay must be in [0, 1)"
    )
    flags.register_validator(f"{p}real_label", lambda v: 0.5 < v <= 1, message=f"--{p}real_label must be in (0.5, 1]")


def gan_config_from_flags(flag_values, prefix=""):
    """Builds a `TrainConfig` from parsed flags (common ones unprefixed)."""
    values = {}
    for field in dataclasses.fields(TrainConfig):
        name = field.name if field.name in ("seed", "strategy", "tpu", "mnist_path") else prefix + field.name
        values[field.name] = flag_values[name].value
    return TrainConfig(**values)
