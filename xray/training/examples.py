"""The training images and their captions, from a user's folder."""

import dataclasses
import os

import numpy as np

from genlab.errors import UserError
from genlab.files import read_csv
from xray.config import DEFAULT_CAPTION_TEMPLATE
from xray.data.image_folder import class_folders, read_image

CAPTION_COLUMNS = ("text", "caption", "prompt")  # Hugging Face ImageFolder's, and genlab-xray's metadata.csv.


@dataclasses.dataclass(frozen=True)
class Example:
    path: str
    caption: str


def training_examples(data_dir, caption_template=DEFAULT_CAPTION_TEMPLATE, class_prompts=None):
    """The images and their captions, from either layout users have:

    - `data_dir/metadata.csv` with `file_name` and a caption column (text, caption or prompt);
    - class sub-folders, captioned by `class_prompts` ({class: caption}) or the template.
    """
    metadata = os.path.join(data_dir, "metadata.csv")
    if os.path.isfile(metadata):
        rows = read_csv(metadata)
        column = next((c for c in CAPTION_COLUMNS if rows and c in rows[0]), None)
        if column is None or "file_name" not in rows[0]:
            raise UserError(f"{metadata} needs a file_name column and a caption column ({', '.join(CAPTION_COLUMNS)})")
        examples = []
        for number, row in enumerate(rows, start=2):
            path = os.path.join(data_dir, row["file_name"])
            if not os.path.isfile(path):
                raise UserError(f"{metadata} line {number}: {row['file_name']} does not exist in {data_dir}")
            if not row[column].strip():
                raise UserError(f"{metadata} line {number}: {row['file_name']} has no caption in column {column!r}")
            examples.append(Example(path, row[column].strip()))
        return examples
    classes = class_folders(data_dir, "--data_dir")
    if class_prompts is not None:
        missing = sorted(set(classes) - set(class_prompts))
        if missing:
            raise UserError(
                f"class folder {missing[0]!r} has no prompt in --prompt_file; add one, or leave out --prompt_file "
                "to caption classes with --caption_template"
            )
    if "{class_name}" not in caption_template:
        raise UserError(f"--caption_template={caption_template!r} lacks {{class_name}}")
    return [
        Example(
            path, class_prompts[name] if class_prompts else caption_template.format(class_name=name.replace("_", " "))
        )
        for name, paths in classes.items()
        for path in paths
    ]


def read_training_images(examples, image_size):
    """(N, size, size, 3) uint8 RGB: grayscale repeated. All files must have the same channel count."""
    images = np.empty((len(examples), image_size, image_size, 3), dtype=np.uint8)
    first_channels = None
    for i, example in enumerate(examples):
        pixels = read_image(example.path, image_size)
        channels = pixels.shape[-1]
        if first_channels is None:
            first_channels = channels
        elif channels != first_channels:
            kinds = {1: "grayscale", 3: "colour"}
            raise UserError(
                f"{example.path} is {kinds[channels]} but {examples[0].path} is {kinds[first_channels]}: "
                "mixed channel counts; convert the folder to one kind"
            )
        images[i] = np.round(np.broadcast_to(pixels, (image_size, image_size, 3)) * 255).astype(np.uint8)
    return images


def to_model_range(images):
    """uint8 images to Stable Diffusion's pixel range [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0
