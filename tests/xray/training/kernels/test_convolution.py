"""A frozen convolution's input gradient as one matrix product (xray.training.kernels.convolution) is Keras's,
and it is taken only where it applies."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D

from xray.training.kernels import use_training_kernels

from helpers.numerics import assert_close, output_and_gradients


def frozen_network(size, filters, kernel_size, padding, strides=1, dtype="float32"):
    x = keras.Input((size, size, 16))
    network = keras.Model(x, PaddedConv2D(filters, kernel_size, padding=padding, strides=strides, dtype=dtype)(x))
    for variable in network.weights:
        variable.trainable = False
    return network


def gradient_op_types(network, x):
    step = tf.function(lambda x: output_and_gradients(lambda x: tf.cast(network(x), tf.float32), [x]))
    return step, {op.type for op in step.get_concrete_function(x).graph.get_operations()}


@pytest.mark.parametrize("kernel_size, padding", [(3, 1), (1, 0), (3, 0)])
def test_a_frozen_convolution_gives_keras_gradient_for_its_input(kernel_size, padding):
    network = frozen_network(4, 24, kernel_size, padding)  # 16 positions or fewer, 24 outputs: it applies.
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 4, 4, 16)), tf.float32)
    keras_step, keras_ops = gradient_op_types(network, x)
    expected = keras_step(x)
    use_training_kernels(network)
    step, ops = gradient_op_types(network, x)
    assert_close(step(x), expected)
    assert "Conv2DBackpropInput" in keras_ops and "Conv2DBackpropInput" not in ops  # The swap took.


def test_bfloat16_gives_keras_gradient_to_its_round_off():
    network = frozen_network(4, 24, 3, 1, dtype="bfloat16")
    x = tf.constant(np.random.default_rng(1).standard_normal((1, 4, 4, 16)), tf.bfloat16)
    keras_step, _ = gradient_op_types(network, x)
    expected = [tf.cast(t, tf.float32) for t in keras_step(x)]
    use_training_kernels(network)
    step, ops = gradient_op_types(network, x)
    for a, b in zip(step(x), expected):
        assert np.abs(tf.cast(a, tf.float32) - b).max() < 0.02 * np.abs(b).max()  # bfloat16 keeps 8 bits.
    assert "Conv2DBackpropInput" not in ops


@pytest.mark.parametrize(
    "case", ["more positions than outputs", "unknown size", "stride 2", "trainable kernel", "lora"]
)
def test_tensorflows_gradient_stays_where_it_does_not_apply(case):
    size = {"more positions than outputs": 6, "unknown size": None}.get(case, 4)  # 36 positions against 24 outputs.
    network = frozen_network(size, 24, 3, 1, strides=2 if case == "stride 2" else 1)
    conv = network.layers[-1].conv2d
    if case == "trainable kernel":
        conv._kernel.trainable = True
    if case == "lora":
        conv.enable_lora(2)
    use_training_kernels(network)
    _, ops = gradient_op_types(network, tf.TensorSpec((1, size, size, 16)))
    assert "Conv2DBackpropInput" in ops
