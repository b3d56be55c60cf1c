"""Fine-tuning's normalizations (xray.training.kernels.normalization) compute Keras's LayerNormalization and
GroupNormalization (followed by a swish, as in a ResBlock) and their gradients, and keep only
their input for the backward pass."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from xray.training.kernels.normalization import group_norm_call, layer_norm_call

from helpers.numerics import ancestry, assert_close, output_and_gradients

LAYERS = {
    "layer": (keras.layers.LayerNormalization, {}, layer_norm_call, (2, 6, 16)),
    "group": (keras.layers.GroupNormalization, {"groups": 4}, group_norm_call, (2, 3, 5, 16)),
    "group+swish": (
        keras.layers.GroupNormalization,
        {"groups": 4},
        lambda self, x: group_norm_call(self, x, swish=True),
        (2, 3, 5, 16),
    ),
}


def keras_call(kind, layer):
    """Keras's computation of `kind`: the layer, and for "group+swish" a swish layer after it."""
    if kind != "group+swish":
        return layer
    swish = keras.layers.Activation("swish", dtype=layer.dtype_policy)
    return lambda x: swish(layer(x))


def built_layer(kind, dtype, policy="float32"):
    """Keras's layer with gamma and beta away from their initial ones and zeros, its call for
    fine-tuning, and an input in `dtype`."""
    make, arguments, call, shape = LAYERS[kind]
    layer = make(epsilon=1e-5, dtype=policy, **arguments)
    layer.build(shape)
    rng = np.random.default_rng(4)
    for weight in (layer.gamma, layer.beta):
        weight.assign(rng.standard_normal(weight.shape) + 1)
    x = tf.constant(rng.standard_normal(shape) * 3 + 2, dtype)  # Not centred: the mean matters.
    return layer, call, x


def gradients(layer, x, call):
    return output_and_gradients(
        lambda x, *weights: tf.cast(call(x), tf.float32), [x, layer.gamma.value, layer.beta.value]
    )


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_gives_keras_output_and_gradients_for_input_gamma_and_beta(kind):
    layer, call, x = built_layer(kind, tf.float32)
    expected = gradients(layer, x, keras_call(kind, layer))
    layer.call = types.MethodType(call, layer)
    assert_close(gradients(layer, x, layer), expected)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])  # Adapters on frozen weights: the latter.
def test_bfloat16_inputs_give_keras_output_to_bfloat16_round_off(kind, policy):
    layer, call, x = built_layer(kind, tf.bfloat16, policy)
    expected = [np.asarray(tf.cast(t, tf.float32)) for t in gradients(layer, x, keras_call(kind, layer))]
    layer.call = types.MethodType(call, layer)
    got = gradients(layer, x, layer)
    assert layer(x).dtype == got[1].dtype == tf.bfloat16  # Computed in float32, returned in the input's dtype.
    for i, (a, b) in enumerate(zip(got, expected)):
        assert np.abs(np.asarray(tf.cast(a, tf.float32)) - b).max() < 0.02 * np.abs(b).max(), i


@pytest.mark.parametrize("kind", ["group", "group+swish"])
def test_the_backward_pass_keeps_the_input_not_float32_copies(kind):
    """What a gradient function reads from the forward pass is what the graph keeps: here the
    bfloat16 input and small statistics, where Keras's layers keep float32 tensors as large as
    the input, and a swish its input (the normalized values) as well."""
    layer, call, x = built_layer(kind, tf.bfloat16, "mixed_bfloat16")

    def kept_from_forward(call):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = call(x)
            return y, tape.gradient(y, x)

        graph = step.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
        ancestors = ancestry()
        forward, backward = (ancestors(output.op) for output in graph.outputs)  # What y and its gradient need.
        return {t.name: t for op in backward - forward for t in op.inputs if t.op in forward}.values()

    big = lambda kept: sorted(t.dtype.name for t in kept if t.shape.num_elements() == x.shape.num_elements())  # noqa: E731
    assert "float32" in big(kept_from_forward(keras_call(kind, layer)))  # Keras's own: the test can tell.
    if kind == "group+swish":  # The normalization alone keeps its input, the swish after it its own.
        layer.call = types.MethodType(group_norm_call, layer)
        assert big(kept_from_forward(keras_call(kind, layer))) == ["bfloat16", "bfloat16"]
    layer.call = types.MethodType(call, layer)
    assert big(kept_from_forward(layer)) == ["bfloat16"]  # The input alone.
