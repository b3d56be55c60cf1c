"""Attention for training KerasCV's U-Net without keeping its (tokens x tokens) matrices.

KerasCV's `CrossAttention` computes softmax(q k^T) v with whole matrices, and for the backward
pass TensorFlow keeps softmax(q k^T): at 512 px that is (heads, 4096, 4096) floats in each of
the five highest-resolution self-attentions. Here queries go in chunks, each keeping only its
softmax's log-normalizer, and the backward pass computes the chunk's probabilities again (as
FlashAttention does): the same function to float32 round-off, without those matrices.
"""

import types

import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

QUERY_CHUNK = 1024  # Queries per chunk: (heads, 1024, 4096) floats live at once at 512 px.


def attention(q, k, v, scale, chunk=QUERY_CHUNK):
    """softmax(q k^T * scale) v for (batch, heads, tokens, head_size) tensors, computed in float32;
    its gradient recomputes the probabilities chunk by chunk instead of keeping them."""
    dtype = q.dtype
    q, k, v = (tf.cast(t, tf.float32) for t in (q, k, v))
    starts = range(0, q.shape[2], chunk)

    def probabilities(i, normalizer=None):
        scores = tf.matmul(q[:, :, i : i + chunk], k, transpose_b=True) * scale
        if normalizer is None:
            normalizer = tf.reduce_logsumexp(scores, axis=-1, keepdims=True)
        return tf.exp(scores - normalizer), normalizer

    @tf.custom_gradient
    def core(q, k, v):
        outputs, normalizers = [], []
        for i in starts:
            p, normalizer = probabilities(i)
            outputs.append(tf.matmul(p, v))
            normalizers.append(normalizer)
        output = tf.concat(outputs, axis=2)

        def gradient(d_output):
            # With P = softmax(S): dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO * O)).
            row_dot = tf.reduce_sum(d_output * output, axis=-1, keepdims=True)
            d_q, d_k, d_v = [], tf.zeros_like(k), tf.zeros_like(v)
            for i, normalizer in zip(starts, normalizers):
                p, _ = probabilities(i, normalizer)
                d_out = d_output[:, :, i : i + chunk]
                d_v += tf.matmul(p, d_out, transpose_a=True)
                d_scores = p * (tf.matmul(d_out, v, transpose_b=True) - row_dot[:, :, i : i + chunk]) * scale
                d_q.append(tf.matmul(d_scores, k))
                d_k += tf.matmul(d_scores, q[:, :, i : i + chunk], transpose_a=True)
            return tf.concat(d_q, axis=2), d_k, d_v

        return output, gradient

    return tf.cast(core(q, k, v), dtype)


def _chunked_call(self, inputs, context=None):
    """CrossAttention.call with `attention` in place of its matmul, softmax, matmul."""
    context = inputs if context is None else context

    def heads(x, tokens):  # (batch, tokens, heads * size) -> (batch, heads, tokens, size)
        return tf.transpose(tf.reshape(x, (-1, tokens, self.num_heads, self.head_size)), (0, 2, 1, 3))

    out = attention(heads(self.to_q(inputs), inputs.shape[1]), heads(self.to_k(context), context.shape[1]),
                    heads(self.to_v(context), context.shape[1]), self.scale)
    out = tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (-1, inputs.shape[1], self.num_heads * self.head_size))
    return self.out_proj(out)


def use_chunked_attention(network):
    """Makes every CrossAttention in `network` compute with `attention`; weights are untouched."""
    for layer in network._flatten_layers(include_self=False):
        if isinstance(layer, CrossAttention):
            layer.call = types.MethodType(_chunked_call, layer)
