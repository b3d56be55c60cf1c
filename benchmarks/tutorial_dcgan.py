"""TensorFlow's DCGAN tutorial (tensorflow.org/tutorials/generative/dcgan) as written: the peer.

Its networks are `gan.model`'s `tf_tutorial` architecture (Dense 7x7x256, 5x5 transposed
convolutions 128, 64, 1; discriminator 5x5 convolutions 64, 128 with dropout 0.3); noise 100,
batch 256, Adam 1e-4 with Keras's default betas, and its own train step, which feeds one
generator pass to both networks' tapes. Both benchmarks that compare against the tutorial
train it through this class, so they time the same thing.
"""

import keras
import tensorflow as tf

from gan.model import build_networks

SETTINGS = dict(architecture="tf_tutorial", noise_dim=100, batch_size=256, learning_rate=1e-4)


class TutorialDCGAN(keras.Model):
    """The tutorial's `train_step`: one forward pass, two tapes, both networks updated."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = generator.inputs[0].shape[-1]
        self.built = True

    def compile(self, learning_rate, jit_compile=False):
        super().compile(jit_compile=jit_compile)
        self.g_optimizer = keras.optimizers.Adam(learning_rate)
        self.d_optimizer = keras.optimizers.Adam(learning_rate)

    def generate(self, noise, labels=None):
        return self.generator(noise, training=False)

    def train_step(self, data):
        images, _ = data
        noise = tf.random.normal([tf.shape(images)[0], self.noise_dim])
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            generated = self.generator(noise, training=True)
            real_output = self.discriminator(images, training=True)
            fake_output = self.discriminator(generated, training=True)
            g_loss = bce(tf.ones_like(fake_output), fake_output)
            d_loss = bce(tf.ones_like(real_output), real_output) + bce(tf.zeros_like(fake_output), fake_output)
        g_grads = g_tape.gradient(g_loss, self.generator.trainable_variables)
        d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return {"g_loss": g_loss, "d_loss": d_loss}


def build_tutorial():
    """The tutorial's networks and train step, compiled with its optimizer settings."""
    generator, discriminator = build_networks(SETTINGS["architecture"], SETTINGS["noise_dim"])
    model = TutorialDCGAN(generator, discriminator)
    model.compile(SETTINGS["learning_rate"])
    return model
