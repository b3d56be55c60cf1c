"""Image conversions shared by the labs."""

import numpy as np


def to_uint8(images, value_range=(-1.0, 1.0)):
    """Maps float images in `value_range` to uint8 [0, 255], rounding to the nearest level.

    The default is the range of a tanh output (the GAN) and of Stable Diffusion's decoder.
    """
    low, high = value_range
    scaled = (np.asarray(images, dtype=np.float32) - low) * np.float32(255.0 / (high - low))
    # A diverged network gives NaN: black rather than a crash in the grid writer.
    return np.clip(np.round(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
