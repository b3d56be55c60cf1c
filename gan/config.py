"""The GAN's settings: plain data, no TensorFlow, so programs can define their flags from it at once."""

import dataclasses

# Architectures by name. "default" is this project's: a narrower, 4x4-kernel DCGAN that
# trains several times faster on a CPU than "tf_tutorial" (TensorFlow's DCGAN tutorial,
# kept for benchmarks and comparison), because MNIST needs little width. 4x4 kernels with stride 2
# divide evenly, avoiding the checkerboard artefacts of 5x5/stride-2 transposed
# convolutions (Odena et al., 2016).
ARCHITECTURES = {
    "default": dict(
        generator_dense_filters=64,
        generator_conv=((32, 2),),
        discriminator_conv=(32, 64),
        kernel_size=4,
        dropout=0.0,  # As in DCGAN (Radford et al., 2015); see docs/design.md for the tutorial's 0.3.
    ),
    "tf_tutorial": dict(
        generator_dense_filters=256,
        generator_conv=((128, 1), (64, 2)),
        discriminator_conv=(64, 128),
        kernel_size=5,
        dropout=0.3,
    ),
}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the project's tuned settings."""

    # The fifth epoch scores as well as the fourth or better, and conditional mode needs it to draw its
    # digits as the digit asked for; later epochs score no better (docs/benchmarks.md).
    epochs: int = 5
    batch_size: int = 64
    noise_dim: int = 64
    architecture: str = "default"
    conditional: bool = False
    # Unconditional runs condition on this many clusters of the images (gan.clusters), fewer on a
    # small training set; 0: none.
    clusters: int = 2000
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5  # Radford et al. (2015): 0.9 oscillates, 0.5 is stable.
    # Adam in TensorFlow's fused kernel (genlab.optimizers.FusedAdam): Adam's update with less
    # memory traffic for the cluster embeddings' millions of weights; False: Keras's Adam.
    fused_adam: bool = True
    real_label: float = 1.0
    averaging_decay: float = 0.999  # Samples come from this moving average of G's weights; 0: the latest G.
    seed: int = 0
    num_train_images: int = 0  # 0: all 60,000.
    jit_compile: bool = False
    strategy: str = "auto"  # See genlab.distribute.make_strategy.
    tpu: str = ""
    mnist_path: str = ""
