"""KerasCV's U-Net layers for training, computing again in the backward pass what TensorFlow would keep.

KerasCV's `CrossAttention` computes softmax(q k^T) v with whole matrices, and for the backward
pass TensorFlow keeps softmax(q k^T): at 512 px that is (heads, 4096, 4096) floats in each of
the five highest-resolution self-attentions. Here queries go in chunks, each keeping only its
softmax's log-normalizer, and the backward pass computes the chunk's probabilities again (as
FlashAttention does): the same function to round-off, without those matrices. The output
comes back with the heads merged, as the out projection takes it, so that the one tensor its
adapter keeps is the one the gradient reads. `GEGLU`'s tanh-approximated GELU likewise keeps
only its input, not each intermediate of the formula, and in the high-resolution blocks the
layer keeps only its own input: the backward pass computes its projection (to eight times
that width) again. A `ResBlock`'s GroupNormalization and the swish after it run as one
`xray.training.kernels.normalization.normalize`, so the swish does not keep the normalized values.

Products run in the inputs' dtype, as every other product of the network does (bfloat16
under mixed_bfloat16, where they are several times faster than in float32); the softmax's
exponentials and its gradient are computed in float32, each by one elementwise XLA function,
so that a chunk's matrix is read and written once by them rather than once by each op.

Two things make the recomputation real in a graph. The recomputing ops wait on the incoming
gradient: otherwise Grappler's common-subexpression pass merges them with the forward pass's
identical ops, and the forward's matrices are kept after all. And each chunk waits until the
one before has used all its matrices, so that the executor, which runs whatever is ready,
holds one chunk's matrices at a time rather than all of them.
"""

import tensorflow as tf

from xray.sd.attention import chunk_scores, chunked_attention, exponentials, query_chunk, split_heads
from xray.training.kernels.normalization import group_norm_call

# A GEGLU projection's output for one image from this size on is computed again in the backward
# pass rather than kept: the higher-resolution blocks', which fill memory at the step's peak.
# The product costs the same at every resolution, so recomputing the small ones would cost as
# much time for little memory.
RECOMPUTE_BYTES = 8 * 2**20


@tf.function(jit_compile=True)
def _score_gradient(p, d_p, row_dot, scale):
    """The gradient for the unscaled scores: with P = softmax(S), dS = P (dP - rowsum(dO * O))."""
    return tf.cast(tf.cast(p, tf.float32) * (tf.cast(d_p, tf.float32) - row_dot) * scale, p.dtype)


def attention(q, k, v, scale, chunk=None):
    """softmax(q k^T * scale) v for (batch, heads, tokens, head_size) tensors, with the heads
    merged, as `xray.sd.attention.chunked_attention` computes it; its gradient recomputes the
    probabilities chunk by chunk instead of keeping them. `chunk` (queries) defaults to
    `query_chunk`'s.

    The output is returned as the out projection takes it, and the gradient reads it in that
    layout: so the backward pass keeps one copy of it, which the projection's adapter needs too."""
    dtype, (heads, tokens, size) = q.dtype, q.shape[1:]
    chunk = chunk or query_chunk(heads, k.shape[2], dtype)
    starts = range(0, tokens, chunk)
    f32 = lambda t: tf.cast(t, tf.float32)  # noqa: E731

    @tf.custom_gradient
    def core(q, k, v):
        output, normalizers = chunked_attention(q, k, v, scale, chunk)  # Kept in the inputs' dtype.

        def gradient(d_merged):
            # With P = softmax(S): dV = P^T dO, dP = dO V^T, dS as `_score_gradient` computes it.
            with tf.control_dependencies([d_merged]):  # Else the cast runs in the forward pass and its copy is kept.
                per_head = tf.reshape(f32(d_merged) * f32(output), (-1, tokens, heads, size))
                row_dot = tf.transpose(tf.reduce_sum(per_head, axis=-1, keepdims=True), (0, 2, 1, 3))
            d_output = tf.transpose(tf.reshape(d_merged, (-1, tokens, heads, size)), (0, 2, 1, 3))
            d_q, d_k, d_v = [], tf.zeros_like(k, tf.float32), tf.zeros_like(v, tf.float32)
            done = [d_output]  # A chunk starts when the one before has used all its matrices.
            for i, normalizer in zip(starts, normalizers):
                p = exponentials(chunk_scores(q, k, i, chunk, done), scale, normalizer)
                d_out = d_output[:, :, i : i + chunk]
                d_v += f32(tf.matmul(p, d_out, transpose_a=True))
                with tf.control_dependencies(
                    done
                ):  # dP depends on no other chunk: it would be computed for all at once.
                    d_p = tf.matmul(d_out, v, transpose_b=True)
                d_scores = _score_gradient(p, d_p, row_dot[:, :, i : i + chunk], scale)
                d_q.append(tf.matmul(d_scores, k))
                d_k += f32(tf.matmul(d_scores, q[:, :, i : i + chunk], transpose_a=True))
                done = [d_q[-1], d_k, d_v]
            return tf.concat(d_q, axis=2), tf.cast(d_k, dtype), tf.cast(d_v, dtype)

        return output, gradient

    return core(q, k, v)


def cross_attention_call(self, inputs, context=None):
    """CrossAttention.call with `attention` in place of its matmul, softmax, matmul."""
    context = inputs if context is None else context
    return self.out_proj(
        attention(
            split_heads(self.to_q(inputs), inputs.shape[1], self.num_heads),
            split_heads(self.to_k(context), context.shape[1], self.num_heads),
            split_heads(self.to_v(context), context.shape[1], self.num_heads),
            self.scale,
        )
    )


GELU_SCALE = 0.7978845608  # sqrt(2 / pi), as KerasCV writes it.


def geglu(h, units):
    """KerasCV's GEGLU after its projection, x * gelu(gate) for h = [x, gate] (each `units`
    wide), with the same ops in the same order; its gradient keeps only h."""

    def parts(after):
        with tf.control_dependencies([after]):
            x, gate = h[..., :units], h[..., units:]
            return x, gate, tf.tanh(gate * GELU_SCALE * (1 + 0.044715 * (gate**2)))

    @tf.custom_gradient
    def core(h):
        x, gate, t = parts(h)

        def gradient(d_out):
            x, gate, t = parts(d_out)
            d_gelu = 0.5 * (1 + t) + 0.5 * gate * (1 - t * t) * GELU_SCALE * (1 + 3 * 0.044715 * (gate**2))
            return tf.concat([d_out * 0.5 * gate * (1 + t), d_out * x * d_gelu], axis=-1)

        return x * 0.5 * gate * (1 + t), gradient

    return core(h)


def geglu_call(self, inputs):
    """GEGLU.call with `geglu` in place of its elementwise formula. Where its projection's output
    is large (`RECOMPUTE_BYTES`), the backward pass computes the projection again from the
    layer's input, an eighth of its size, instead of keeping it (`tf.recompute_grad` makes the
    recomputation wait on the incoming gradient)."""
    project = lambda x: geglu(self.dense(x), self.output_dim)  # noqa: E731
    if inputs.shape[1] * 2 * self.output_dim * tf.as_dtype(self.dense.compute_dtype).size >= RECOMPUTE_BYTES:
        return tf.recompute_grad(project)(inputs)
    return project(inputs)


def res_block_call(self, inputs):
    """ResBlock.call with each GroupNormalization and the swish after it as one `normalize`,
    which keeps only its input, where the swish would keep the normalized values."""
    inputs, embeddings = inputs
    for layer in self.embedding_flow:
        embeddings = layer(embeddings)
    norm, _, conv = self.entry_flow
    x = conv(group_norm_call(norm, inputs, swish=True)) + embeddings[:, None, None]
    norm, _, conv = self.exit_flow
    return conv(group_norm_call(norm, x, swish=True)) + self.residual_projection(inputs)
