"""The reference the fused Adam (genlab.optimizers) is proven against."""

import keras
import tensorflow as tf


class AdamOnDenseGradients(keras.optimizers.Adam):
    """Keras's Adam given each gradient dense: Adam as defined. Given an embedding's sparse gradient,
    Keras's Adam squares each lookup's slice before adding up rows looked up twice (the GAN's
    discriminator looks each label up twice a step, for real and generated images); Adam's second
    moment is of their sum."""

    def apply(self, grads, trainable_variables=None):
        return super().apply([tf.convert_to_tensor(grad) for grad in grads], trainable_variables)
