"""Distances between two sets of image features, whatever network made the features.

- `frechet_distance`: FID (Heusel et al., 2017): the distance between two Gaussians fitted
  to the sets. Biased by the sample count, so only sets of equal size are compared.
- `kernel_distance`: KID (Binkowski et al., 2018): an unbiased squared MMD with the cubic
  polynomial kernel, averaged over random subsets; fair on small sets, and its spread
  over subsets says how far to trust it.
"""

import warnings

import numpy as np
import scipy.linalg

# sqrtm of a product of covariances is real in exact arithmetic; round-off leaves an
# imaginary part, harmless while it is this small next to the real part.
IMAGINARY_TOLERANCE = 1e-3


def frechet_distance(features_a, features_b, eps=1e-6):
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), with scipy's matrix square root.

    ReLU features include units that never fire, which makes the covariances singular;
    `eps * I` is added to both (in every term, so identical sets still give 0).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    offset = np.eye(a.shape[1]) * eps
    sigma_a = np.cov(a, rowvar=False) + offset
    sigma_b = np.cov(b, rowvar=False) + offset
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if np.iscomplexobj(covmean):
        imaginary = np.abs(covmean.imag).max()
        if imaginary > IMAGINARY_TOLERANCE * max(np.abs(covmean.real).max(), 1e-12):
            warnings.warn(
                f"FID: the covariance square root has an imaginary part of {imaginary:.3g} "
                "(the feature sets may be too small or degenerate); the FID is unreliable",
                RuntimeWarning,
            )
        covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))


def kernel_distance(features_a, features_b, subset_size=1000, num_subsets=100, seed=0):
    """KID as (mean, standard deviation) over `num_subsets` random subsets of each set.

    Kernel k(x, y) = (x.y / d + 1)^3, as in the paper and TF-GAN. Unbiased: about 0 (and
    possibly slightly negative) for two samples of one distribution.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(a)} and {len(b)}")
    if m == len(a) == len(b):
        num_subsets = 1  # Every subset is the whole of both sets: one value, spread 0.
    rng = np.random.default_rng(seed)
    dims = a.shape[1]
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dims + 1) ** 3
        k_yy = (y @ y.T / dims + 1) ** 3
        k_xy = (x @ y.T / dims + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(within - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))
