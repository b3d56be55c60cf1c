"""LeNet-5 (LeCun et al., 1998) in Keras, with today's defaults.

Two 5x5 convolution + 2x2 average-pooling stages, dense 120 and 84, ten outputs: LeNet-5's
shape, with its subsampling layers as plain average pooling. Modernised where it costs
nothing and buys accuracy: ReLU instead of scaled tanh, batch norm after each convolution,
and 'same' padding on the first convolution (the paper padded 28x28 digits to 32x32 for the
same effect). Average rather than max pooling because max pooling's gradient is slow under
XLA on CPUs, and LeNet-5's own subsampling was an average (docs/design.md has the comparison).
"""

import keras
from keras import layers

FEATURES_LAYER = "features"  # The 84-unit layer: LeNet's embedding for MNIST-FID.


def build_lenet5(conv_filters=(6, 16)):
    """Returns logits for 10 classes. `conv_filters` are LeNet-5's (6, 16) by default."""
    first, second = conv_filters
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Rescaling(1 / 255.0),  # Takes uint8-range pixels, like MNIST on disk.
            layers.Conv2D(first, 5, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),  # Settles within a short run too.
            layers.ReLU(),
            layers.AveragePooling2D(2),
            layers.Conv2D(second, 5, use_bias=False),
            layers.BatchNormalization(momentum=0.9),  # Settles within a short run too.
            layers.ReLU(),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu", name=FEATURES_LAYER),
            layers.Dense(10, name="logits"),
        ],
        name="lenet5",
    )


def probabilities_and_features(model):
    """A model mapping images (0..255) to (softmax probabilities, 84-d features).

    Re-applies LeNet's layers to a new input, which also works for a Sequential model
    loaded from disk (that has no symbolic outputs until called).
    """
    image = keras.Input((28, 28, 1), name="image")
    x, features = image, None
    for layer in model.layers:
        x = layer(x)
        if layer.name == FEATURES_LAYER:
            features = x
    return keras.Model(image, [keras.ops.softmax(x), features], name="lenet5_judge")
