"""LoRA computed PEFT's way in training (xray.lora.factored_call) is Keras's own LoRA layer:
the same outputs and the same gradients for the adapters and the inputs."""

import types

import keras
import numpy as np
import tensorflow as tf

from xray.lora import factored_call


def outputs_and_gradients(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.reshape(tf.sin(tf.range(tf.size(y), dtype=tf.float32)), tf.shape(y)))
    variables = [layer.lora_kernel_a, layer.lora_kernel_b]
    return [y] + tape.gradient(loss, [x] + variables)


def test_factored_lora_equals_keras_lora():
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 5, 12)), tf.float32)
    layer = keras.layers.Dense(7, activation="gelu")
    layer(x)
    layer.enable_lora(3, b_initializer="glorot_uniform")  # B is zero until trained; here it is not.
    keras_lora = outputs_and_gradients(layer, x)
    layer.call = types.MethodType(factored_call, layer)
    factored = outputs_and_gradients(layer, x)
    for i, (got, expected) in enumerate(zip(factored, keras_lora)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"item {i}")
    assert np.abs(np.asarray(keras_lora[2])).max() > 1e-3  # A's gradient is not trivially zero.
