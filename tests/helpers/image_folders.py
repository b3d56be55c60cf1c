"""Small labelled image folders with known answers, standing in for real X-ray sets: shapes, and
real MNIST digits upscaled to an X-ray-like size."""

import os

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def shape_image(shape, rng, size=48):
    """A bright shape of random size and place on a dark, noisy background (uint8, grayscale)."""
    image = Image.fromarray(rng.integers(0, 60, (size, size), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    r = rng.integers(size // 5, size // 3)
    cx, cy = rng.integers(r + 2, size - r - 2, size=2)
    box = [cx - r, cy - r, cx + r, cy + r]
    fill = int(rng.integers(180, 256))
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return np.asarray(image)


def make_shapes_folder(root, per_class, seed=0, classes=SHAPES, size=48, label_of=None):
    """ROOT/<shape>/<shape>_NNN.png; `label_of(shape, index)` may file an image under another class."""
    rng = np.random.default_rng(seed)
    for shape in classes:
        for index in range(per_class):
            folder = os.path.join(root, label_of(shape, index) if label_of else shape)
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(shape_image(shape, rng, size)).save(os.path.join(folder, f"{shape}_{index:03d}.png"))
    return str(root)


def make_noise_folder(root, per_class, seed=0, classes=SHAPES, size=48):
    """ROOT/<class>/*.png of uniform noise: nothing like any shape."""
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"noise_{index:03d}.png"))
    return str(root)


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def make_digits_folder(root, mnist_path, digits, per_class, start=0, size=128, label_of=None):
    """ROOT/<digit name>/<index>.png: MNIST training digits `start`..`start + per_class` of each
    of `digits`, upscaled to `size` px; `label_of(digit, index)` may file one under another class."""
    with np.load(mnist_path) as data:
        images, labels = data["x_train"], data["y_train"]
    for digit in digits:
        for index in np.flatnonzero(labels == digit)[start : start + per_class]:
            folder = os.path.join(root, DIGIT_NAMES[label_of(digit, index) if label_of else digit])
            os.makedirs(folder, exist_ok=True)
            upscaled = Image.fromarray(images[index]).resize((size, size), Image.Resampling.BICUBIC)
            upscaled.save(os.path.join(folder, f"{index:05d}.png"))
    return str(root)
