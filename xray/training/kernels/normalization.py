"""KerasCV's U-Net normalizations for training: Keras's functions, keeping only their input
for the backward pass.

Keras's LayerNormalization and GroupNormalization compute in float32 under mixed precision,
and for the backward pass TensorFlow keeps the float32 copy of their input and the normalized
values as well: two float32 tensors per normalization where the half-precision input would
do. Here the backward pass computes the normalized values again from the input and each
group's mean and reciprocal standard deviation, which are all it keeps. Forward and backward
each run as one XLA function, so their chains of elementwise ops read the tensor once or twice
rather than once per op.

In a ResBlock a swish follows each GroupNormalization, and its backward pass would keep its
input, the normalized values; `normalize(..., swish=True)` applies it inside the same
function, and its gradient computes those values again as well.
"""

import tensorflow as tf

# The axes statistics are taken over, in the (rows, positions, groups, width) view `normalize` uses.
_STATISTICS = (1, 3)


@tf.function(jit_compile=True)
def _normalize(x, gamma, beta, epsilon, swish):
    """y = (x - mean) / sqrt(variance + epsilon) * gamma + beta in float32, or y * sigmoid(y) if
    `swish`, back in x's dtype; with the mean and reciprocal standard deviation."""
    x32 = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x32, axis=_STATISTICS, keepdims=True)
    inverse = tf.math.rsqrt(tf.reduce_mean(tf.square(x32 - mean), axis=_STATISTICS, keepdims=True) + epsilon)
    y = (x32 - mean) * inverse * gamma + beta
    return tf.cast(y * tf.sigmoid(y) if swish else y, x.dtype), mean, inverse


@tf.function(jit_compile=True)
def _normalize_gradient(x, mean, inverse, gamma, beta, d_y, swish):
    """Gradients for x, gamma and beta, from x and its statistics."""
    x_hat = (tf.cast(x, tf.float32) - mean) * inverse
    d_y = tf.cast(d_y, tf.float32)
    if swish:  # Through y * sigmoid(y), y computed again.
        y = x_hat * gamma + beta
        s = tf.sigmoid(y)
        d_y = d_y * s * (1 + y * (1 - s))
    d_x_hat = d_y * gamma
    d_x = inverse * (
        d_x_hat
        - tf.reduce_mean(d_x_hat, axis=_STATISTICS, keepdims=True)
        - x_hat * tf.reduce_mean(d_x_hat * x_hat, axis=_STATISTICS, keepdims=True)
    )
    d_gamma = tf.reduce_sum(d_y * x_hat, axis=(0, 1), keepdims=True)
    return tf.cast(d_x, x.dtype), d_gamma, tf.reduce_sum(d_y, axis=(0, 1), keepdims=True)


def normalize(x, gamma, beta, epsilon, groups=None, swish=False):
    """Keras's GroupNormalization over `groups` channel groups or, without `groups`,
    LayerNormalization over the last axis, for x of shape (batch, ..., channels), followed by
    a swish if `swish`: computed in float32 and returned in x's dtype. Its gradient keeps x
    and two numbers per group."""
    channels, shape = x.shape[-1], tf.shape(x)
    if groups:
        grouped = tf.reshape(x, (shape[0], -1, groups, channels // groups))
    else:  # Each position a row of its own.
        grouped, groups = tf.reshape(x, (-1, 1, 1, channels)), 1
    affine = lambda v: tf.reshape(tf.cast(v, tf.float32), (1, 1, groups, channels // groups))  # noqa: E731

    @tf.custom_gradient
    def core(x, gamma, beta):
        y, mean, inverse = _normalize(x, gamma, beta, epsilon, swish)
        return y, lambda d_y: _normalize_gradient(x, mean, inverse, gamma, beta, d_y, swish)

    return tf.reshape(core(grouped, affine(gamma), affine(beta)), shape)


def layer_norm_call(self, inputs):
    """LayerNormalization.call (over the last axis, centred and scaled) with `normalize`."""
    return tf.cast(normalize(inputs, self.gamma, self.beta, self.epsilon), self.compute_dtype)


def group_norm_call(self, inputs, swish=False):
    """GroupNormalization.call (channels last, centred and scaled) with `normalize`; with
    `swish`, the swish after it as well."""
    return tf.cast(normalize(inputs, self.gamma, self.beta, self.epsilon, self.groups, swish), self.compute_dtype)
