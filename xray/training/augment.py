"""Augmentation of training images that keeps anatomy: a random crop, a small rotation,
brightness and contrast, and a left-right flip only when asked.

A radiograph has a side: the heart is on the left of a chest film, and a flipped one shows a
different, rare anatomy (situs inversus). So flips are off unless the user turns them on, and
rotations stay small, as positioning varies. Each image's draws come from the generator it is
given, which `UpdatePlan` seeds with (seed, batch number): a resumed run augments as an
uninterrupted one does.
"""

import dataclasses

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Augmentation:
    crop_scale: float = 1.0  # Each crop's side is a uniform share of the image's in [crop_scale, 1]; 1: none.
    rotation: float = 0.0  # Degrees, uniform in [-rotation, rotation].
    brightness_contrast: float = 0.0  # Contrast times 1 +- this, brightness +- this (of the [-1, 1] range).
    flip: bool = False  # Left-right, half the images.

    @classmethod
    def of(cls, config):
        """The augmentation a FinetuneConfig asks for."""
        return cls(config.random_crop, config.random_rotation, config.brightness_contrast, config.random_flip)

    @property
    def on(self):
        return self.crop_scale < 1 or self.rotation > 0 or self.brightness_contrast > 0 or self.flip


def augment(images, augmentation, rng):
    """`images` (N, H, W, C) float32 in [-1, 1], each cropped, rotated, jittered and flipped by
    draws from `rng`; a new array. Every image takes the same number of draws, whatever they are."""
    out = np.empty_like(images)
    size = images.shape[1]
    for i, image in enumerate(images):
        scale = rng.uniform(augmentation.crop_scale, 1.0)
        centre = (rng.uniform(scale / 2, 1 - scale / 2, size=2)) * size  # (x, y) of the crop, inside the image.
        angle = np.deg2rad(rng.uniform(-augmentation.rotation, augmentation.rotation))
        contrast, brightness = rng.uniform(-1, 1, size=2) * augmentation.brightness_contrast
        flip = augmentation.flip and rng.random() < 0.5
        # PIL's AFFINE maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f): a
        # rotation by `angle` and a scaling by `scale` about the output's centre, moved to the crop's centre.
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        half = size / 2
        matrix = (cos, -sin, centre[0] - cos * half + sin * half, sin, cos, centre[1] - sin * half - cos * half)
        for channel in range(images.shape[-1]):
            plane = Image.fromarray(np.ascontiguousarray(image[..., channel], dtype=np.float32))  # Mode F.
            moved = plane.transform((size, size), Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=-1.0)
            out[i, ..., channel] = np.asarray(moved)
        mean = out[i].mean()
        out[i] = np.clip((out[i] - mean) * (1 + contrast) + mean + brightness, -1.0, 1.0)
        if flip:
            out[i] = out[i, :, ::-1]
    return out
