"""Small labelled image folders with known answers, standing in for real X-ray sets: shapes, and
real MNIST digits upscaled to an X-ray-like size; and public sets in their own formats (MedMNIST's
.npz, a Hugging Face save_to_disk folder)."""

import os

import numpy as np
from PIL import Image, ImageDraw

from helpers.checks import import_peer

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


PUBLIC_SET_COUNTS = {"train": (5, 3), "val": (2, 1), "test": (3, 2)}  # (normal, pneumonia) per split


def write_medmnist_fixture(path, size=28, rgb=False):
    """A .npz in MedMNIST's layout: uint8 images (N, H, W), labels (N, 1). Image i of a split is
    filled with its own grey level, so a written file can be traced back to its row."""
    arrays = {}
    for split, (normal, pneumonia) in PUBLIC_SET_COUNTS.items():
        labels = np.array([0] * normal + [1] * pneumonia, dtype=np.uint8)[::-1].reshape(-1, 1)
        levels = np.arange(len(labels), dtype=np.uint8) * 20 + 10
        shape = (len(labels), size, size, 3) if rgb else (len(labels), size, size)
        arrays[f"{split}_images"] = np.broadcast_to(levels.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()
        arrays[f"{split}_labels"] = labels
    np.savez(path, **arrays)
    return path


def hugging_face_folder(path, labels="class"):
    """A DatasetDict saved to disk: train/validation/test, grey images, and a label column that is a
    ClassLabel ("class"), a plain integer ("integer"), or a list of class labels ("several")."""
    datasets = import_peer("datasets")
    names = datasets.ClassLabel(names=["Normal", "Pneumonia Viral"])
    label_feature = {"class": names, "integer": datasets.Value("int64"), "several": datasets.List(names)}[labels]
    splits = {}
    for split, (normal, pneumonia) in (("train", (3, 2)), ("validation", (1, 1)), ("test", (2, 1))):
        values = [0] * normal + [1] * pneumonia
        images = [Image.fromarray(np.full((20, 24), 40 + 100 * value, np.uint8)) for value in values]
        splits[split] = datasets.Dataset.from_dict(
            {"image": images, "label": [[v] for v in values] if labels == "several" else values},
            features=datasets.Features({"image": datasets.Image(), "label": label_feature}),
        )
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


def folder_pixels(folder):
    """{path inside `folder`: int16 pixels} of a dataset folder's class images."""
    return {
        str(p.relative_to(folder)): np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.glob("*/*.png"))
    }


def assert_same_images(a, b):
    """Two `folder_pixels` name the same images, equal to a grey level (batched convolutions may round differently)."""
    assert a.keys() == b.keys()
    for name in a:
        assert np.abs(a[name] - b[name]).max() <= 1, name
