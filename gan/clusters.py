"""Groups of similar training images, found without labels, and sampling them from noise.

- `pixel_clusters(images, k, seed)`: each training image's cluster (k-means on pixel PCA).
- `ClusterFromNoise`, `cluster_sampler(generator, shares)`: the saved generator picks a
  cluster from its own noise, so it takes noise alone like any unconditional generator.

Why: a generator fed only Gaussian noise is a continuous map, so between two digits it also
draws the shapes in between, which are neither (Khayatkhoei et al., 2018, "Disconnected
manifold learning"). Conditioning both networks on clusters of the training images lets it
jump from one group of similar digits to another instead (Sage et al., 2018, clustered GANs;
Liu et al., 2020, self-conditioned GANs, who cluster the discriminator's features). For MNIST
k-means on the first 50 principal components of the pixels is enough, and the labels are
never read (docs/design.md says how pure the clusters come out). Each cluster needs many
images (MNIST gives 600 to each of 100): with a few dozen, the discriminator learns them by
heart.
"""

import math

import keras
import numpy as np
from keras import layers, ops

PCA_COMPONENTS = 50
KMEANS_ITERATIONS = 30


def pixel_clusters(images, k, seed=0):
    """Cluster index (int32, 0..k-1) of every image: k-means++ then Lloyd on pixel PCA."""
    pixels = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    pixels = pixels - pixels.mean(axis=0)  # Not -=: that would shift the caller's images too.
    _, eigenvectors = np.linalg.eigh(pixels.T @ pixels)  # Ascending eigenvalues.
    points = pixels @ eigenvectors[:, ::-1][:, :PCA_COMPONENTS]
    return _kmeans(points, k, np.random.default_rng(seed))


def cluster_shares(clusters, k):
    """Fraction of the training images in each cluster: how often sampling picks it."""
    return np.bincount(clusters, minlength=k) / len(clusters)


def _kmeans(points, k, rng):
    squared_norms = (points**2).sum(axis=1, keepdims=True)

    def squared_distances(centers):
        return np.maximum(squared_norms - 2 * points @ centers.T + (centers**2).sum(axis=1), 0)

    # k-means++ (Arthur & Vassilvitskii, 2007): each new center is drawn with probability
    # proportional to its squared distance from the nearest center so far.
    centers = points[rng.choice(len(points), size=1)]
    for _ in range(k - 1):
        nearest = squared_distances(centers).min(axis=1)
        weights = nearest / nearest.sum() if nearest.sum() > 0 else None  # None: all points are centers already.
        centers = np.vstack([centers, points[rng.choice(len(points), p=weights)]])
    for _ in range(KMEANS_ITERATIONS):
        assignment = squared_distances(centers).argmin(axis=1)
        centers = np.stack(
            [points[assignment == j].mean(axis=0) if (assignment == j).any() else centers[j] for j in range(k)]
        )
    return squared_distances(centers).argmin(axis=1).astype(np.int32)


@keras.saving.register_keras_serializable(package="genlab")
class ClusterFromNoise(layers.Layer):
    """Each sample's cluster, chosen by its first noise value with the clusters' shares.

    For z ~ N(0, 1), Phi(z) is uniform on (0, 1); cutting (0, 1) at the cumulative shares
    picks cluster j with probability shares[j], and the same noise always the same cluster.
    """

    def __init__(self, shares, **kwargs):
        super().__init__(**kwargs)
        self.shares = [float(share) for share in shares]

    def call(self, noise):
        uniform = 0.5 * (1.0 + ops.erf(noise[:, :1] / math.sqrt(2.0)))
        bounds = ops.convert_to_tensor(np.cumsum(self.shares)[:-1], dtype=uniform.dtype)
        return ops.sum(ops.cast(uniform >= bounds, "int32"), axis=1)

    def get_config(self):
        return {**super().get_config(), "shares": self.shares}


def cluster_sampler(generator, shares):
    """A noise -> image model around a cluster-conditioned `generator` (weights shared)."""
    noise = keras.Input(generator.inputs[0].shape[1:], name="noise")
    cluster = ClusterFromNoise(shares, name="cluster")(noise)
    return keras.Model(noise, generator([noise, cluster]), name="generator")
