"""The sorting rule and the sorted folder: each image goes to the folder of LeNet's label.

`OUT/0` .. `OUT/9` hold the images LeNet predicts as that digit; with `min_confidence`,
images whose top probability is below it go to `OUT/uncertain`. `OUT/predictions.csv` has
one row per image file.
"""

import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from genlab.errors import UserError
from genlab.files import check_output_path, current_umask, write_csv

UNCERTAIN = "uncertain"


def folder_for(probabilities, min_confidence=0.0):
    """The sorting rule: the predicted digit's folder, or `uncertain` below `min_confidence`."""
    if probabilities.max() < min_confidence:
        return UNCERTAIN
    return str(int(probabilities.argmax()))


def prepare_output_dir(out_dir, overwrite):
    """Refuses a non-empty `out_dir` unless `overwrite`; returns a fresh staging folder beside it.

    Everything is written into the staging folder and moved into place by `publish`, so an
    interrupted run leaves the old folder as it was and never a mix of two runs.
    """
    out_dir = os.path.abspath(out_dir)
    check_output_path(out_dir, "--output_dir")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise UserError(
            f"output folder {out_dir} is not empty; pass --overwrite to replace it, or choose another --output_dir"
        )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's folder is private; the published one must not be.
    return staging


def publish(staging_dir, out_dir):
    """Moves the finished staging folder onto `out_dir`, replacing an old one."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        trash = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir))
        os.replace(out_dir, os.path.join(trash, "old"))
        os.replace(staging_dir, out_dir)
        shutil.rmtree(trash)
    else:
        os.replace(staging_dir, out_dir)


def write_sorted_images(out_dir, images_uint8, probabilities, min_confidence=0.0, intended_labels=None):
    """Writes each image as a PNG into its folder and `predictions.csv`; returns the rows."""
    rows = []
    for index, (image, probs) in enumerate(zip(images_uint8, probabilities)):
        folder = folder_for(probs, min_confidence)
        relative = f"{folder}/{index:06d}.png"
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
        # Written straight into the staging folder: `publish` makes the whole folder appear at once.
        Image.fromarray(np.squeeze(image, axis=-1) if image.ndim == 3 else image, mode="L").save(
            os.path.join(out_dir, relative)
        )
        row = {
            "file": relative,
            "folder": folder,
            "predicted_label": int(probs.argmax()),
            "confidence": float(probs.max()),
        }
        if intended_labels is not None:
            row["intended_label"] = int(intended_labels[index])
        row.update({f"p{digit}": float(p) for digit, p in enumerate(probs)})
        rows.append(row)
    write_csv(os.path.join(out_dir, "predictions.csv"), rows)
    return rows
