"""A frozen convolution's gradient for its input as one matrix product with its kernel as stored.

TensorFlow computes that gradient with oneDNN's backward-data kernel, which wants the kernel in a
blocked layout of its own: on every call it reorders the whole kernel into a buffer it allocates
then, and frees after, so the buffer's pages are faulted in afresh each time. For the U-Net's
widest convolutions (1,280 channels, 3x3) that reorder costs many times the product itself,
which at their low resolutions has few positions. Here the gradient is dy W^T for every tap at
once, (positions, out) x (out, taps * in), with the kernel as it is stored (reshaped, not
copied); each tap's columns are then added in at its offset, a col2im over a small image.

It is applied where that product's output is no larger than the kernel (an image has no more
positions than the kernel has outputs), so it holds no more than the reorder did. At higher
resolutions the product's output outgrows the kernel while the kernel shrinks, and TensorFlow's
gradient stays.
"""

import tensorflow as tf


def takes_product_gradient(layer, inputs):
    """Whether `product_gradient_convolution` computes `layer`'s input gradient for `inputs`:
    a frozen kernel (no LoRA, not trainable), a plain 2-D convolution (channels last, valid
    padding, stride and dilation 1, one group), and no more positions than outputs (a known
    number of them)."""
    # Conv._kernel, the frozen kernel even with LoRA on: private Keras API, held by setup.py's keras pin
    # (tests/test_private_apis.py).
    height, width, _, outputs = layer._kernel.shape
    if None in inputs.shape[1:3]:
        return False
    frozen = not layer.lora_enabled and not (layer.trainable and layer._kernel.trainable)
    plain = (
        layer.rank == 2
        and layer.data_format == "channels_last"
        and layer.padding == "valid"
        and layer.groups == 1
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
    )
    return frozen and plain and (inputs.shape[1] - height + 1) * (inputs.shape[2] - width + 1) <= outputs


def product_gradient_convolution(self, inputs, kernel):
    """BaseConv.convolution_op, with its input gradient as one matrix product where
    `takes_product_gradient`; the kernel gets no gradient there, being frozen."""
    if not takes_product_gradient(self, inputs):
        return type(self).convolution_op(self, inputs, kernel)

    @tf.custom_gradient
    def convolve(x, w):
        def gradient(d_y):
            (height, width, channels, outputs), (rows, columns) = w.shape, d_y.shape[1:3]
            taps = tf.matmul(tf.reshape(d_y, (-1, outputs)), tf.reshape(w, (-1, outputs)), transpose_b=True)
            taps = tf.reshape(taps, (-1, rows, columns, height, width, channels))
            # Tap (i, j) read the input at an offset of (i, j) from each output position.
            d_x = tf.add_n(
                [
                    tf.pad(taps[:, :, :, i, j], ((0, 0), (i, height - 1 - i), (j, width - 1 - j), (0, 0)))
                    for i in range(height)
                    for j in range(width)
                ]
            )
            return d_x, None

        return type(self).convolution_op(self, x, w), gradient

    # Read here: tf.custom_gradient would want a variable's gradient.
    return convolve(inputs, tf.convert_to_tensor(kernel))
