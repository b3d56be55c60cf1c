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
never read. Finer clusters hold more alike digits, which both networks learn sooner, while
the digits stay as far from their nearest training digit as real test digits are
(benchmarks/gan_time_to_quality.py measures both). With fewer than about 30 images a cluster
the discriminator could learn them by heart, so a small training set gets fewer clusters
(`cluster_count`).
"""

import math

import keras
import numpy as np
from keras import layers, ops

PCA_COMPONENTS = 50
KMEANS_ITERATIONS = 30
MIN_CLUSTER_SIZE = 30  # Images a cluster holds on average, at the least.


def cluster_count(requested, image_count):
    """The clusters a run conditions on: `requested`, or fewer where `image_count` images would
    give a cluster fewer than MIN_CLUSTER_SIZE on average (at least one)."""
    return max(1, min(requested, image_count // MIN_CLUSTER_SIZE))


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


def nearest_rows(points, references, block_rows=4096):
    """For each row of `points`, the index of its nearest row of `references` and the squared
    Euclidean distance to it.

    argmin |p - r|^2 = argmin |r|^2 - 2 p.r, `block_rows` points at a time: the whole (points,
    references) matrix would take gigabytes with thousands of references. In place: each
    temporary of a block's size costs about as much as the product.
    """
    reference_norms = (references**2).sum(axis=1)
    indices, squared = [], []
    for block in np.array_split(points, max(1, len(points) // block_rows)):
        distances = block @ references.T
        distances *= -2
        distances += reference_norms
        nearest = distances.argmin(axis=1)
        indices.append(nearest)
        squared.append(distances[np.arange(len(block)), nearest] + (block**2).sum(axis=1))
    return np.concatenate(indices), np.maximum(np.concatenate(squared), 0.0)


def _kmeans(points, k, rng):
    # k-means++ (Arthur & Vassilvitskii, 2007): each new center is drawn with probability
    # proportional to its squared distance from the nearest center so far, which each new
    # center updates.
    centers = [points[rng.choice(len(points))]]
    nearest = np.full(len(points), np.inf, dtype=points.dtype)
    for _ in range(k - 1):
        nearest = np.minimum(nearest, ((points - centers[-1]) ** 2).sum(axis=1))
        weights = nearest / nearest.sum() if nearest.sum() > 0 else None  # None: all points are centers already.
        centers.append(points[rng.choice(len(points), p=weights)])
    centers = np.stack(centers)
    for _ in range(KMEANS_ITERATIONS):
        assignment, _ = nearest_rows(points, centers)
        counts = np.bincount(assignment, minlength=k)[:, None]
        sums = np.zeros_like(centers)
        np.add.at(sums, assignment, points)
        centers = np.where(counts > 0, sums / np.maximum(counts, 1), centers)  # An empty cluster keeps its center.
    return nearest_rows(points, centers)[0].astype(np.int32)


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
