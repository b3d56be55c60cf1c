"""LeNet-5's training settings: plain data, no TensorFlow, so programs can define their flags from it at once."""

import dataclasses


@dataclasses.dataclass
class LeNetConfig:
    # A batch of 256 costs little more per step than one of 128 on a CPU, so 6 epochs of it reach
    # the accuracy of more, smaller steps sooner (benchmarks/lenet_speed.py measures both).
    epochs: int = 6
    batch_size: int = 256
    learning_rate: float = 4e-3  # Peak of a cosine decay to 0 over the run; doubled with the batch.
    augment: bool = True  # Small random shifts: the cheapest accuracy gain on MNIST.
    seed: int = 0
    num_train_images: int = 0  # 0: all 60,000.
    jit_compile: bool = True  # XLA fuses this small net's many small ops (benchmarks/lenet_speed.py).
    mnist_path: str = ""
