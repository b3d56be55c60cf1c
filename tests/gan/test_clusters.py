import keras
import numpy as np
import tensorflow as tf

from gan.clusters import (
    ClusterFromNoise,
    cluster_count,
    cluster_sampler,
    cluster_shares,
    nearest_rows,
    pixel_clusters,
)
from gan.model import GAN, build_networks


def _three_blobs(per_blob=40):
    """28x28 images in three groups: a bright square top-left, bottom-right, or none."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.05, (3 * per_blob, 28, 28, 1)).astype("float32")
    images[:per_blob, :10, :10] += 1
    images[per_blob : 2 * per_blob, 18:, 18:] += 1
    return images, np.repeat(np.arange(3), per_blob)


def test_pixel_clusters_find_separated_groups_and_are_repeatable():
    images, groups = _three_blobs()
    original = images.copy()
    clusters = pixel_clusters(images, 3, seed=0)
    np.testing.assert_array_equal(images, original)  # The training images are left as they were.
    assert clusters.dtype == np.int32 and clusters.shape == groups.shape
    # Each group is one cluster and each cluster one group, whatever the numbering.
    assert len(set(zip(groups, clusters))) == 3 and len(set(clusters)) == 3
    np.testing.assert_array_equal(clusters, pixel_clusters(images, 3, seed=0))
    np.testing.assert_allclose(cluster_shares(clusters, 4), [1 / 3, 1 / 3, 1 / 3, 0])


def test_nearest_rows_match_every_pair_compared():
    rng = np.random.default_rng(3)
    points, references = rng.standard_normal((23, 5)), rng.standard_normal((7, 5))
    squared = ((points[:, None] - references[None]) ** 2).sum(axis=2)
    indices, distances = nearest_rows(points, references, block_rows=4)  # Several blocks, one short.
    np.testing.assert_array_equal(indices, squared.argmin(axis=1))
    np.testing.assert_allclose(distances, squared.min(axis=1), rtol=1e-9, atol=1e-9)


def test_cluster_count_keeps_clusters_large_enough():
    assert cluster_count(2000, 60000) == 2000  # MNIST: 30 images a cluster.
    assert cluster_count(2000, 30000) == 1000
    assert cluster_count(5, 20) == 1


def test_pixel_clusters_cope_with_more_clusters_than_distinct_images():
    images = np.zeros((6, 28, 28, 1), "float32")
    clusters = pixel_clusters(images, 4, seed=0)
    assert clusters.min() >= 0 and clusters.max() < 4


def test_cluster_from_noise_follows_the_shares_and_the_noise():
    shares = [0.5, 0.0, 0.2, 0.3]
    noise = np.random.default_rng(0).standard_normal((20000, 8)).astype("float32")
    clusters = ClusterFromNoise(shares)(noise).numpy()
    assert clusters.dtype == np.int32
    np.testing.assert_allclose(np.bincount(clusters, minlength=4) / len(clusters), shares, atol=0.015)
    # Only the first noise value decides: the median (0) is the border of the first half.
    np.testing.assert_array_equal(
        ClusterFromNoise(shares)(np.array([[-0.01, 5.0], [0.01, -5.0]], "float32")).numpy(), [0, 2]
    )


def test_cluster_sampler_takes_noise_alone_and_survives_saving(tmp_path):
    generator, _ = build_networks("default", noise_dim=16, num_classes=3)
    sampler = cluster_sampler(generator, [0.2, 0.3, 0.5])
    assert len(sampler.inputs) == 1
    noise = np.random.default_rng(1).standard_normal((12, 16)).astype("float32")
    expected = generator([noise, ClusterFromNoise([0.2, 0.3, 0.5])(noise).numpy()], training=False).numpy()
    np.testing.assert_allclose(sampler(noise, training=False).numpy(), expected, atol=1e-6)
    sampler.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    np.testing.assert_allclose(loaded(noise, training=False).numpy(), expected, atol=1e-6)


def test_cluster_gan_generates_from_noise_and_its_checkpoint_restores(tmp_path):
    def make():
        generator, discriminator = build_networks("default", noise_dim=16, num_classes=3)
        gan = GAN(generator, discriminator, seed=0, cluster_shares=[0.2, 0.3, 0.5])
        gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
        return gan

    gan = make()
    images = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    gan.train_step((tf.constant(images), tf.constant(np.arange(8, dtype="int32") % 3)))
    gan.save_weights(str(tmp_path / "c.weights.h5"))
    noise = np.random.default_rng(2).standard_normal((6, 16)).astype("float32")
    generated = gan.generate(noise).numpy()
    assert generated.shape == (6, 28, 28, 1)
    restored = make()
    restored.load_weights(str(tmp_path / "c.weights.h5"))
    np.testing.assert_allclose(restored.generate(noise).numpy(), generated, atol=1e-6)
    assert not np.allclose(make().generate(noise).numpy(), generated)  # A fresh GAN draws other digits.
