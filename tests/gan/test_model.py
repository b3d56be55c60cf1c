import keras
import numpy as np
import pytest
import tensorflow as tf

from gan.config import ARCHITECTURES
from gan.model import GAN, build_networks
from genlab.optimizers import FusedAdam

from helpers.optimizers import AdamOnDenseGradients


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_and_ranges(architecture, conditional):
    generator, discriminator = build_networks(architecture, noise_dim=16, num_classes=10 if conditional else None)
    noise = np.random.default_rng(0).standard_normal((5, 16)).astype("float32") * 10  # Large, to hit tanh's tails.
    labels = np.arange(5, dtype="int32")
    images = generator([noise, labels] if conditional else noise).numpy()
    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= -1 and images.max() <= 1
    logits = discriminator([images, labels] if conditional else images).numpy()
    assert logits.shape == (5, 1)


def test_conditional_generator_depends_on_label():
    generator, _ = build_networks("default", noise_dim=16, num_classes=10)
    noise = np.zeros((2, 16), "float32")
    images = generator([noise, np.array([3, 7], "int32")]).numpy()
    assert not np.allclose(images[0], images[1])


@pytest.mark.parametrize("conditional", [False, True])
def test_one_train_step_updates_both_networks(conditional):
    generator, discriminator = build_networks("default", noise_dim=16, num_classes=10 if conditional else None)
    gan = GAN(generator, discriminator, seed=0)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    before_g = [w.numpy().copy() for w in generator.trainable_weights]
    before_d = [w.numpy().copy() for w in discriminator.trainable_weights]
    images = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    logs = gan.train_step((tf.constant(images), tf.constant(np.arange(8, dtype="int32") % 10)))
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before_g, generator.trainable_weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before_d, discriminator.trainable_weights))


def test_checkpoint_restores_optimizers_so_noise_continues(tmp_path):
    generator, discriminator = build_networks("default", noise_dim=16)
    gan = GAN(generator, discriminator, seed=0)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    gan.train_step((tf.zeros((4, 28, 28, 1)), tf.zeros(4, "int32")))
    gan.save_weights(str(tmp_path / "c.weights.h5"))

    g2, d2 = build_networks("default", noise_dim=16)
    restored = GAN(g2, d2, seed=123)
    restored.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    restored.load_weights(str(tmp_path / "c.weights.h5"))
    assert int(restored.d_optimizer.iterations.numpy()) == 1
    assert int(restored.g_optimizer.iterations.numpy()) == 1
    # The noise stream is keyed on the step, so the restored model draws what the original would.
    restored.seed = gan.seed
    np.testing.assert_array_equal(restored._noise(4, True).numpy(), gan._noise(4, True).numpy())
    for a, b in zip(gan.d_optimizer.variables, restored.d_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(gan.averaged_generator.weights, restored.averaged_generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("averaging_decay", [0.999, 0.0])
def test_averaged_generator_is_a_moving_average_of_the_generator(averaging_decay):
    generator, discriminator = build_networks("default", noise_dim=16)
    gan = GAN(generator, discriminator, seed=0, averaging_decay=averaging_decay)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    start = [w.numpy().copy() for w in generator.weights]
    images = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    gan.train_step((tf.constant(images), tf.zeros(8, "int32")))
    decay = min(averaging_decay, 2 / 11)  # After step 1, the warm-up caps the decay at 2/11.
    for before, average, weight in zip(start, gan.averaged_generator.weights, generator.weights):
        np.testing.assert_allclose(average.numpy(), decay * before + (1 - decay) * weight.numpy(), rtol=1e-5, atol=1e-7)
    # Samples come from the average, in inference mode.
    noise = np.random.default_rng(2).standard_normal((3, 16)).astype("float32")
    np.testing.assert_allclose(gan.generate(noise).numpy(), gan.averaged_generator(noise, training=False).numpy())


def test_fused_adam_trains_the_gan_as_keras_adam_does():
    """TrainConfig.fused_adam's optimizer against Keras's on the same steps, label embeddings in
    both networks. Adam's first steps move a weight by about the learning rate whatever its
    gradient's size, so a near-zero gradient that round-off tips one way in one run and the
    other way in the other would differ by that much: a large epsilon damps those."""
    images = np.random.default_rng(1).uniform(-1, 1, (3, 8, 28, 28, 1)).astype("float32")
    labels = tf.constant(np.arange(8, dtype="int32"))
    trained = []
    for adam in (AdamOnDenseGradients, FusedAdam):
        keras.utils.set_random_seed(0)
        generator, discriminator = build_networks("default", noise_dim=16, num_classes=10)
        gan = GAN(generator, discriminator, seed=0)
        gan.compile(adam(1e-3, beta_1=0.5, epsilon=1e-3), adam(1e-3, beta_1=0.5, epsilon=1e-3))
        for batch in images:
            gan.train_step((tf.constant(batch), labels))
        trained.append([w.numpy() for w in gan.averaged_generator.weights + discriminator.weights])
    keras_weights, fused_weights = trained
    for a, b in zip(fused_weights, keras_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
