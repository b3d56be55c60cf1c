"""Attention in query chunks (xray.sd.attention) computes what KerasCV's CrossAttention computes."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

from xray.sd.attention import use_chunked_attention

HEADS, HEAD_SIZE, TOKENS, CONTEXT = 4, 8, 48, 7


def attention_model(context_tokens, policy):
    """KerasCV's layer alone, as self-attention (no context) or attending to a context."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        x = keras.Input((TOKENS, HEADS * HEAD_SIZE))
        if not context_tokens:
            return keras.Model(x, CrossAttention(HEADS, HEAD_SIZE)(x))
        context = keras.Input((context_tokens, 16))
        return keras.Model([x, context], CrossAttention(HEADS, HEAD_SIZE)(x, context=context))
    finally:
        keras.config.set_dtype_policy(previous)


def chunk_count(model, inputs):
    """How many chunks' exponentials the model's graph computes."""
    graph = tf.function(lambda inputs: model(inputs)).get_concrete_function(inputs).graph
    return sum(
        op.type.endswith("PartitionedCall") and "exponentials" in op.get_attr("f").name for op in graph.get_operations()
    )


def model_inputs(context_tokens):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, TOKENS, HEADS * HEAD_SIZE)).astype("float32") * 2  # Peaked softmaxes too.
    return [x, rng.standard_normal((2, context_tokens, 16)).astype("float32")] if context_tokens else x


@pytest.mark.parametrize("context_tokens", [0, CONTEXT])
def test_chunks_compute_keras_cv_attention(context_tokens):
    model, inputs = attention_model(context_tokens, "float32"), model_inputs(context_tokens)
    expected = np.asarray(model(inputs))
    keys = context_tokens or TOKENS
    use_chunked_attention(model, chunk_bytes=HEADS * keys * 4 * 10)  # 10 queries a chunk: 5 chunks, the last short.
    assert chunk_count(model, inputs) == 5
    np.testing.assert_allclose(np.asarray(model(inputs)), expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_chunks_stay_close_to_keras_cv():
    exact, inputs = attention_model(0, "float32"), model_inputs(0)
    expected = np.asarray(exact(inputs))
    model = attention_model(0, "mixed_bfloat16")  # The same weights: the same seed.
    stock = np.asarray(model(inputs), dtype="float32")
    use_chunked_attention(model, chunk_bytes=HEADS * TOKENS * 2 * 10)
    chunked = np.asarray(model(inputs), dtype="float32")
    error = lambda got: np.linalg.norm(got - expected) / np.linalg.norm(expected)  # noqa: E731
    assert 1e-4 < error(chunked) < 0.02 and error(chunked) < 2 * error(stock)  # bfloat16, no worse than KerasCV's.


def test_a_matrix_that_fits_one_chunk_runs_keras_cv_call():
    model, inputs = attention_model(0, "float32"), model_inputs(0)
    expected = np.asarray(model(inputs))
    use_chunked_attention(model)  # A (4, 48, 48) matrix is far below a chunk.
    assert chunk_count(model, inputs) == 0
    np.testing.assert_array_equal(np.asarray(model(inputs)), expected)
