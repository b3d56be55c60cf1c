"""Groups of similar training images, found without labels: `pixel_clusters(images, k, seed)`.

Why: a generator fed only Gaussian noise is a continuous map, so between two digits it also
draws the shapes in between, which are neither (Khayatkhoei et al., 2018, "Disconnected
manifold learning"). Conditioning both networks on clusters of the training images lets it
jump from one group of similar digits to another instead (Sage et al., 2018, clustered GANs;
Liu et al., 2020, self-conditioned GANs, who cluster the discriminator's features). For MNIST
k-means on the first 50 principal components of the pixels is enough: 100 clusters are 87%
pure by digit, and the labels are never read. Each cluster needs many images (MNIST gives
600 to each of 100): with a few dozen, the discriminator learns them by heart.
"""

import numpy as np

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
        centers = np.stack([points[assignment == j].mean(axis=0) if (assignment == j).any() else centers[j] for j in range(k)])
    return squared_distances(centers).argmin(axis=1).astype(np.int32)
