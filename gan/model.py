"""The DCGAN: generator, discriminator, and the `GAN` model whose `train_step` trains both.

Follows keras-io's `dcgan_overriding_train_step.py`: each network is built in one function,
`GAN` takes both, gets its optimizers in `compile`, and `train_step` reads top to bottom.
Class-conditional mode follows keras-io's conditional GAN for the generator (the label joins
the noise in its first Dense layer, as an embedding added to it) and uses a projection
discriminator (Miyato & Koyama, 2018) instead of label channels: it conditions just as well
and costs one embedding.
Unconditional runs train the same way on clusters of the images instead of labels (see
`gan.clusters`) and save `cluster_sampler`, which takes noise alone.
"""

import keras
import tensorflow as tf
from keras import layers, ops

from gan.clusters import cluster_sampler
from gan.config import ARCHITECTURES
from genlab.distribute import PrebuiltModel
from genlab.optimizers import update_moving_average

IMAGE_SHAPE = (28, 28, 1)


def build_generator(noise_dim, num_classes=None, dense_filters=64, conv=((32, 2),), kernel_size=4):
    """Noise (and label) -> 28x28x1 image in [-1, 1].

    Dense (noise and label) to 7x7xdense_filters, then `Conv2DTranspose` blocks (filters,
    stride) with batch norm and LeakyReLU, then a stride-2 `Conv2DTranspose` to one tanh
    channel. The strides must take 7x7 to 28x28.
    """
    noise = keras.Input((noise_dim,), name="noise")
    x = layers.Dense(7 * 7 * dense_filters, use_bias=False)(noise)
    if num_classes:
        # A Dense layer on [noise, one_hot(label)], computed as noise W + W_label[label]: a
        # product with a one-hot vector thousands of clusters wide multiplies zeros.
        label = keras.Input((), dtype="int32", name="label")
        x = x + layers.Embedding(num_classes, 7 * 7 * dense_filters, name="label_embedding")(label)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((7, 7, dense_filters))(x)
    for filters, stride in conv:
        x = layers.Conv2DTranspose(filters, kernel_size, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.2)(x)
    image = layers.Conv2DTranspose(1, kernel_size, strides=2, padding="same", activation="tanh")(x)
    if image.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"generator strides give {image.shape[1:]}, not {IMAGE_SHAPE}")
    return keras.Model([noise, label] if num_classes else noise, image, name="generator")


def build_discriminator(num_classes=None, conv=(32, 64), kernel_size=4, dropout=0.0):
    """28x28x1 image (and label) -> one real/fake logit.

    Strided `Conv2D` blocks with LeakyReLU (and dropout if `dropout` > 0), no pooling
    (Radford et al., 2015).
    Conditional: logit = w.h + embed(label).h, the projection discriminator.
    """
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = image
    for filters in conv:
        x = layers.Conv2D(filters, kernel_size, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    features = layers.Flatten()(x)
    logit = layers.Dense(1)(features)
    if not num_classes:
        return keras.Model(image, logit, name="discriminator")
    label = keras.Input((), dtype="int32", name="label")
    label_embedding = layers.Embedding(num_classes, features.shape[-1])(label)
    projection = ops.sum(label_embedding * features, axis=-1, keepdims=True)
    return keras.Model([image, label], logit + projection, name="discriminator")


def build_networks(architecture, noise_dim, num_classes=None):
    """Returns `(generator, discriminator)` for a name in `ARCHITECTURES`, conditioned on
    `num_classes` labels (digits or clusters) or, if None, on nothing."""
    spec = ARCHITECTURES[architecture]
    generator = build_generator(
        noise_dim, num_classes, spec["generator_dense_filters"], spec["generator_conv"], spec["kernel_size"]
    )
    discriminator = build_discriminator(num_classes, spec["discriminator_conv"], spec["kernel_size"], spec["dropout"])
    return generator, discriminator


def is_conditional(generator):
    return len(generator.inputs) == 2


class GAN(PrebuiltModel):
    """Trains a generator against a discriminator with the non-saturating GAN loss.

    Samples come from `averaged_generator`, an exponential moving average of the generator's
    weights (Yazici et al., 2019; Karras et al., 2018): the trained generator chases a moving
    discriminator and its digits wobble from step to step, while the average sits near the
    middle of that wobble. It costs one multiply-add per weight per step;
    benchmarks/gan_time_to_quality.py judges the average beside the latest weights.
    """

    def __init__(self, generator, discriminator, seed=None, averaging_decay=0.999, cluster_shares=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.averaged_generator = keras.models.clone_model(generator)
        self.averaged_generator.set_weights(generator.get_weights())
        self.cluster_shares = cluster_shares
        # What `generate` runs and training saves: noise (and label) -> image.
        self.sampler = (
            self.averaged_generator
            if cluster_shares is None
            else cluster_sampler(self.averaged_generator, cluster_shares)
        )
        self.averaging_decay = averaging_decay
        self.noise_dim = generator.inputs[0].shape[-1]
        self.conditional = is_conditional(generator)
        self.seed = seed or 0
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")

    def compile(self, d_optimizer, g_optimizer, real_label=1.0, jit_compile=False):
        """`real_label` < 1 is one-sided label smoothing (Salimans et al., 2016)."""
        super().compile(jit_compile=jit_compile)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Built now, not at the first step, so a checkpoint can be restored into them.
        d_optimizer.build(self.discriminator.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)
        self.real_label = real_label

    @property
    def metrics(self):
        # Listed here so Keras resets them at the start of every epoch.
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]

    def generate(self, noise, labels=None):
        """Images from the averaged generator: what grids and the saved generator show.
        `labels` are digits in conditional mode; with clusters, the noise picks them."""
        return self.sampler(noise if labels is None else [noise, labels], training=False)

    def _with_labels(self, inputs, labels):
        return [inputs, labels] if self.conditional else inputs

    def train_step(self, data):
        real_images, labels = data
        batch_size = ops.shape(real_images)[0]
        # Under tf.distribute each replica sees its share of the batch and gradients are
        # summed across replicas, so each replica's mean loss is divided by their number.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        # 1. Discriminator: real images towards `real_label`, generated ones towards 0.
        noise = self._noise(batch_size, for_generator_step=False)
        with tf.GradientTape() as tape:
            fake_images = self.generator(self._with_labels(noise, labels), training=True)
            real_logits = self.discriminator(self._with_labels(real_images, labels), training=True)
            fake_logits = self.discriminator(self._with_labels(fake_images, labels), training=True)
            d_loss = _bce(self.real_label * ops.ones_like(real_logits), real_logits) + _bce(
                ops.zeros_like(fake_logits), fake_logits
            )
            scaled_d_loss = d_loss / replicas
        grads = tape.gradient(scaled_d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        # 2. Generator: make the (just updated) discriminator call fresh fakes real.
        noise = self._noise(batch_size, for_generator_step=True)
        with tf.GradientTape() as tape:
            fake_images = self.generator(self._with_labels(noise, labels), training=True)
            fake_logits_for_g = self.discriminator(self._with_labels(fake_images, labels), training=True)
            g_loss = _bce(ops.ones_like(fake_logits_for_g), fake_logits_for_g)
            scaled_g_loss = g_loss / replicas
        grads = tape.gradient(scaled_g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        # 3. Fold the updated generator into the average (batch-norm statistics too).
        self._update_average()

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(ops.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(ops.mean(ops.sigmoid(fake_logits)))
        return self._logs()

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        strategy = tf.distribute.get_strategy()
        # Across several workers Keras 3 averages each log along axis 0, which a scalar lacks
        # (keras-team/keras#20585); the test is the one Keras makes before doing so.
        if (
            isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()
        ):
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _update_average(self):
        # TensorFlow's ExponentialMovingAverage warm-up: early on the average follows the
        # generator closely, so the first epochs' grids are not dominated by the random init.
        step = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.averaging_decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.averaged_generator.weights, self.generator.weights):
            update_moving_average(average, weight, decay)

    def _noise(self, batch_size, for_generator_step):
        """Noise as a pure function of (seed, step, replica, which update).

        The step is the generator optimizer's iteration count, which checkpoints keep, so a
        resumed run draws exactly the noise an uninterrupted one would; replicas differ.
        """
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group if tf.distribute.has_strategy() else 0
        step = tf.cast(self.g_optimizer.iterations, "int32")
        seed = tf.stack([self.seed * 4096 + tf.cast(replica, "int32"), step * 2 + int(for_generator_step)])
        return tf.random.stateless_normal((batch_size, self.noise_dim), seed=seed)


def _bce(targets, logits):
    return ops.mean(keras.losses.binary_crossentropy(targets, logits, from_logits=True))
