"""Seeded Gaussian noise: the same seed gives the same noise on every machine and process."""

import numpy as np


def gaussian_noise(seed, shape):
    """Standard normal float32 noise of `shape`, a function of `seed` alone (NumPy's PCG64).

    Drawn directly in float32: the X-ray datasets' images depend on this stream, so it must
    not change between versions.
    """
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
