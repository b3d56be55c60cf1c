"""LoRA computed PEFT's way in training (xray.training.kernels.lora.factored_call) is Keras's own LoRA layer:
the same outputs and the same gradients for the adapters and the inputs."""

import types

import keras
import numpy as np
import tensorflow as tf

from xray.training.kernels.lora import factored_call

from helpers.numerics import assert_close, output_and_gradients


def test_factored_lora_equals_keras_lora():
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 5, 12)), tf.float32)
    layer = keras.layers.Dense(7, activation="gelu")
    layer(x)
    layer.enable_lora(3, b_initializer="glorot_uniform")  # B is zero until trained; here it is not.
    inputs_and_adapters = [x, layer.lora_kernel_a.value, layer.lora_kernel_b.value]
    keras_lora = output_and_gradients(lambda x, a, b: layer(x), inputs_and_adapters)
    layer.call = types.MethodType(factored_call, layer)
    assert_close(output_and_gradients(lambda x, a, b: layer(x), inputs_and_adapters), keras_lora)
    assert np.abs(np.asarray(keras_lora[2])).max() > 1e-3  # A's gradient is not trivially zero.
