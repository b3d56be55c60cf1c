"""Attention in query chunks: KerasCV's `CrossAttention` without its whole score matrices.

KerasCV computes softmax(q k^T) v with whole (batch, heads, queries, keys) matrices: at 512 px
each of the U-Net's five highest-resolution self-attentions holds (2, 8, 4096, 4096) scores, and
their scaled copy and their softmax beside them. Here queries go in chunks of `CHUNK_BYTES`, one
chunk's matrices alive at a time; each chunk's softmax is normalized after its product with v
rather than before, its exponentials computed in float32 by one XLA function that reads and
writes the chunk once. The same function to round-off (float32 images within one grey level).

`use_chunked_attention` is the one entry point for generation (`genlab-xray --chunked_attention`);
fine-tuning's kernels (`xray.training.kernels.attention`) run the same forward pass with a
backward pass of their own.
"""

import types

import tensorflow as tf

# KerasCV exports none of Stable Diffusion's layers: keras_cv.src, held by setup.py's keras-cv==0.9.0 pin
# (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

# Bytes of one (heads, chunk, keys) matrix: 128 float32 or 256 bfloat16 queries a chunk at 512 px.
# Smaller chunks keep less alive but add ops (and, in training, passes over the key and value
# gradients that every chunk adds to).
CHUNK_BYTES = 16 * 2**20


def query_chunk(heads, keys, dtype, chunk_bytes=CHUNK_BYTES):
    """Queries per chunk, so that a chunk's (heads, chunk, keys) matrix takes `chunk_bytes`."""
    return max(1, chunk_bytes // (heads * keys * tf.as_dtype(dtype).size))


@tf.function(jit_compile=True)
def exponentials(scores, scale, offset):
    """exp(scores * scale - offset) computed in float32, in the scores' dtype: the softmax's
    numerators (offset: each row's max) or, in training's backward pass, its probabilities
    (offset: each row's log-normalizer)."""
    return tf.cast(tf.exp(tf.cast(scores, tf.float32) * scale - offset), scores.dtype)


def split_heads(x, tokens, heads):
    """(batch, tokens, heads * size) -> (batch, heads, tokens, size)."""
    return tf.transpose(tf.reshape(x, (-1, tokens, heads, x.shape[-1] // heads)), (0, 2, 1, 3))


def merge_heads(x):
    """(batch, heads, tokens, head_size) -> (batch, tokens, heads * head_size)."""
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (-1, x.shape[2], x.shape[1] * x.shape[3]))


def chunk_scores(q, k, start, chunk, after):
    """q k^T for the queries start..start+chunk, computed once the tensors `after` exist: so the
    executor, which runs whatever is ready, holds one chunk's matrices at a time."""
    with tf.control_dependencies(after):
        return tf.matmul(q[:, :, start : start + chunk], k, transpose_b=True)


def chunked_attention(q, k, v, scale, chunk):
    """softmax(q k^T * scale) v for (batch, heads, tokens, head_size) tensors, `chunk` queries at a
    time: (the output with the heads merged, each chunk's log-normalizer in float32). Products run
    in the inputs' dtype, as every other product of the network does."""
    dtype = q.dtype
    # No reduction over a chunk runs in XLA, which would first write a float32 copy of it. The row
    # max is exact in the scores' dtype; the row sums come out of the product with v, as a column
    # of ones appended to it, summed in float32 as the product sums.
    v_and_ones = tf.concat([v, tf.ones_like(v[..., :1])], axis=-1)
    outputs, normalizers = [q], []
    for start in range(0, q.shape[2], chunk):
        scores = chunk_scores(q, k, start, chunk, outputs[-1:])
        peak = tf.cast(tf.reduce_max(scores, axis=-1, keepdims=True), tf.float32) * scale
        weighted = tf.cast(tf.matmul(exponentials(scores, scale, peak), v_and_ones), tf.float32)
        total = weighted[..., -1:]
        outputs.append(tf.cast(weighted[..., :-1] / total, dtype))  # Normalizing the product, not the matrix.
        normalizers.append(peak + tf.math.log(total))
    return merge_heads(tf.concat(outputs[1:], axis=2)), normalizers


def chunked_call(self, inputs, context=None, chunk_bytes=CHUNK_BYTES):
    """CrossAttention.call with `chunked_attention` where a (heads, queries, keys) matrix takes
    more than one chunk; elsewhere KerasCV's own call, which one chunk would only slow."""
    context = inputs if context is None else context
    tokens, keys = inputs.shape[1], context.shape[1]
    chunk = query_chunk(self.num_heads, keys, self.compute_dtype, chunk_bytes)
    if chunk >= tokens:
        return CrossAttention.call(self, inputs, context)
    q, k, v = (
        split_heads(self.to_q(inputs), tokens, self.num_heads),
        split_heads(self.to_k(context), keys, self.num_heads),
        split_heads(self.to_v(context), keys, self.num_heads),
    )
    return self.out_proj(chunked_attention(q, k, v, self.scale, chunk)[0])


def use_chunked_attention(network, chunk_bytes=CHUNK_BYTES):
    """Replaces `call` on the `CrossAttention` layers of `network` (KerasCV's U-Net) with
    `chunked_call`, weights untouched; call it before the network first runs. Forward only:
    fine-tuning has kernels of its own (`xray.training.kernels.use_training_kernels`).
    tests/xray/sd/test_attention.py proves it equal to KerasCV's layer. `Layer._flatten_layers` is
    private Keras API, held by setup.py's keras pin (tests/test_private_apis.py)."""
    call = lambda self, inputs, context=None: chunked_call(self, inputs, context, chunk_bytes)  # noqa: E731
    for layer in network._flatten_layers(include_self=False):
        if type(layer) is CrossAttention:
            layer.call = types.MethodType(call, layer)
    return network
