"""Image folders as users have them: one sub-folder per class of PNG or JPEG files.

    ROOT/<class>/*.png|jpg|jpeg   8- or 16-bit grayscale, or RGB; any size

This is the layout `genlab-xray` writes and public chest X-ray sets use. Images are read as
float32 in [0, 1], centre-cropped to a square and resized to the size asked for. A file
that cannot be read is named in a one-line `UserError`.
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from genlab.errors import UserError
from xray.data.prompts import safe_class_name

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def class_folders(root, flag):
    """{class name: sorted image paths} for each sub-folder of `root` holding images.

    Class names are the folder names made safe (lower case, `_` for spaces), the form
    `genlab-xray` gives them, so "PNEUMONIA" and "pneumonia" name one class.
    """
    if not os.path.isdir(root):
        raise UserError(f"{flag}={root} is not a folder; point it at a folder with one sub-folder of images per class")
    classes = {}
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if not os.path.isdir(folder) or entry.startswith("."):
            continue
        paths = sorted(
            os.path.join(folder, name)
            for name in os.listdir(folder)
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        )
        if not paths:
            raise UserError(
                f"class folder {folder} ({flag}) holds no PNG or JPEG images; add some or remove the folder"
            )
        name = safe_class_name(entry)
        if name in classes:
            raise UserError(f"{flag}={root}: two folders make the class name {name!r}; rename one of them")
        classes[name] = paths
    if not classes:
        raise UserError(f"{flag}={root} has no class sub-folders; put each class's images in ROOT/<class>/")
    return classes


def read_image(path, size):
    """One image as float32 (size, size, channels) in [0, 1]: 1 channel for grayscale, 3 for colour.

    16-bit radiographs rarely use the full range (12 bits is common), so they are stretched
    from their own darkest to their brightest value; 8-bit images keep their values.
    """
    try:
        with Image.open(path) as image:
            image.load()
            pixels, channels = _to_array(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UserError(f"{path} is not a readable PNG or JPEG image ({error}); fix or remove it") from None
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top : top + side, left : left + side]
    resized = [
        np.asarray(Image.fromarray(square[..., c], mode="F").resize((size, size), Image.Resampling.BICUBIC))
        for c in range(channels)
    ]
    return np.clip(np.stack(resized, axis=-1), 0.0, 1.0)


def _to_array(image):
    """(float32 [0, 1] pixels (H, W, C), C) for the PIL modes image files come in."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        return ((pixels - low) / max(high - low, 1.0))[..., None], 1
    if image.mode in ("1", "L", "LA", "P") and not _is_colour_palette(image):
        return np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0, 1
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, 3


def _is_colour_palette(image):
    if image.mode != "P":
        return False
    rgb = np.asarray(image.convert("RGB"))
    return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def to_grayscale(pixels):
    """(..., C) images in [0, 1] as (..., 1): colour by ITU-R 601 luma, as `genlab-xray` saves them."""
    if pixels.shape[-1] == 1:
        return pixels
    return (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]


def read_grayscale_images(paths, size):
    """Many images as one float32 array (N, size, size, 1) in [0, 1]."""
    images = np.empty((len(paths), size, size, 1), dtype=np.float32)
    for i, path in enumerate(paths):
        images[i] = to_grayscale(read_image(path, size))
    return images
