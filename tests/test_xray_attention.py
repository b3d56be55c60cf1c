"""Chunked attention (for fine-tuning) computes KerasCV's CrossAttention and its gradients."""

import keras
import numpy as np
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

from xray.attention import attention, use_chunked_attention


def softmax_attention(q, k, v, scale):
    return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale), v)


def output_and_gradients(function, tensors):
    """The output and the gradients of a weighted sum of it (every output element matters differently)."""
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        output = function(*tensors)
        loss = tf.reduce_sum(output * tf.reshape(tf.sin(tf.range(tf.size(output), dtype=tf.float32)), tf.shape(output)))
    return [output] + tape.gradient(loss, tensors)


def assert_close(got, expected, rtol=1e-5, atol=1e-5):
    for i, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=f"item {i}")


def test_chunks_give_softmax_attention_and_its_gradients():
    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.standard_normal((2, 3, n, 8)) * 2, tf.float32) for n in (10, 7, 7))
    expected = output_and_gradients(lambda *t: softmax_attention(*t, 0.35), [q, k, v])
    for chunk in (4, 10, 64):  # Uneven, exact, and more than the 10 queries.
        assert_close(output_and_gradients(lambda *t: attention(*t, 0.35, chunk=chunk), [q, k, v]), expected)


def test_a_network_computes_what_keras_cvs_layers_do_in_a_graph():
    x, context = keras.Input((12, 16)), keras.Input((5, 16))
    network = keras.Model([x, context], CrossAttention(num_heads=2, head_size=8)(x, context=context))
    rng = np.random.default_rng(1)
    inputs = [tf.constant(rng.standard_normal((2, n, 16)), tf.float32) for n in (12, 5)]
    step = lambda: output_and_gradients(lambda *w: network(inputs), [w.value for w in network.trainable_weights])  # noqa: E731
    keras_cvs, chunked = tf.function(step), tf.function(step)
    expected = keras_cvs()
    use_chunked_attention(network)
    assert_close(chunked(), expected)
    op_types = lambda f: {op.type for op in f.get_concrete_function().graph.get_operations()}  # noqa: E731
    assert "Softmax" in op_types(keras_cvs) and "Softmax" not in op_types(chunked)  # The swap took.
