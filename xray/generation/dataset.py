"""The X-ray dataset on disk: which images a run makes, where they go, and the index over them.

    OUT/<class_name>/<class_name>_<index>.png   grayscale, its own metadata in a PNG text chunk
    OUT/metadata.csv                            one row per PNG (Hugging Face ImageFolder's layout)
    OUT/sample_grid.png                         a few images per class, for checking anatomy

Each PNG carries its generation record, so the metadata cannot drift from the files: a
killed run leaves only whole PNGs (written under a temporary name, then renamed), and
`write_index` rebuilds `metadata.csv` from the PNGs that exist, whoever wrote them.
"""

import collections
import dataclasses
import glob
import hashlib
import json
import os

import numpy as np
from PIL import Image, PngImagePlugin

from genlab.errors import UserError
from genlab.files import atomic_path, write_csv
from genlab.plots import save_labelled_grid
from xray.data.image_folder import read_grayscale_images

METADATA_FILE = "metadata.csv"
GRID_FILE = "sample_grid.png"
PNG_TEXT_KEY = "genlab"  # The PNG text chunk holding an image's metadata row as JSON.
PARTIAL_SUFFIX = ".partial"  # A killed write leaves this, which no image loader reads.
# The settings that decide an image's pixels: an existing file made with other values
# must not be mixed into the dataset by a resumed run.
PIXEL_SETTINGS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "height",
    "width",
    "sampler",
    "precision",
    "numerics",
    "weight_source",
    "source_sha256",
    "strength",
    "mask_sha256",
)


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image of the dataset: what to draw and where it goes."""

    class_name: str
    index: int
    prompt: str
    negative_prompt: str
    seed: int
    source: object = None  # A variation's `xray.generation.variations.Source`; None for text-to-image.
    strength: float | None = None  # A variation's.

    @property
    def file_name(self):
        """The path inside the dataset folder, e.g. `chest_normal/chest_normal_0007.png`."""
        return f"{self.class_name}/{self.class_name}_{self.index:04d}.png"

    def record(self):
        """What this image's metadata row says about it alone: its prompts and seed, and a
        variation's source, mask and strength."""
        row = {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "seed": self.seed}
        if self.source is not None:
            row.update(self.source.record(), strength=self.strength)
        return row


def image_seed(run_seed, prompt, index):
    """An image's own seed, from the run seed, its prompt and its index (SHA-256, 31 bits).

    Stable across processes, machines and batch sizes, unlike Python's salted `hash`.
    """
    digest = hashlib.sha256(f"{run_seed}\x00{prompt}\x00{index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def plan_images(class_prompts, images_per_prompt, run_seed, negative_prompt):
    """Every image of the dataset, class by class, in a fixed order."""
    return [
        ImageJob(
            cp.class_name,
            index,
            cp.prompt,
            cp.negative_prompt if cp.negative_prompt is not None else negative_prompt,
            image_seed(run_seed, cp.prompt, index),
        )
        for cp in class_prompts
        for index in range(cp.count or images_per_prompt)
    ]


def shard(jobs, num_shards, shard_index):
    """This shard's jobs: every `num_shards`-th from `shard_index`, so classes spread evenly."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UserError(f"--shard_index={shard_index} must be in [0, --num_shards={num_shards})")
    return jobs[shard_index::num_shards]


def pending_jobs(output_dir, jobs, settings):
    """The jobs whose PNG does not exist yet; refuses existing PNGs made with other settings."""
    pending = []
    for job in jobs:
        path = os.path.join(output_dir, job.file_name)
        if not os.path.exists(path):
            pending.append(job)
            continue
        made_with = read_png_metadata(path)
        wanted = dict(settings, **job.record())
        differs = [key for key in PIXEL_SETTINGS if str(made_with.get(key)) != str(wanted.get(key))]
        if differs:
            key = differs[0]
            raise UserError(
                f"{path} was made with {key}={made_with.get(key)!r}, this run asks for {wanted[key]!r}; "
                "use a new --output_dir, or rerun with the settings the folder was made with"
            )
    return pending


def remove_partial_files(output_dir, jobs=None):
    """Deletes what killed writes left behind (only ever under the `.partial` name).

    With `jobs`, only theirs: a shard starting up never touches a file another shard is
    writing at that moment.
    """
    if jobs is None:
        patterns = [os.path.join(output_dir, "*", f".*{PARTIAL_SUFFIX}")]
    else:
        patterns = [
            os.path.join(output_dir, job.class_name, f".{job.class_name}_{job.index:04d}.tmp-*{PARTIAL_SUFFIX}")
            for job in jobs
        ]
    for pattern in patterns:
        for path in glob.glob(pattern):
            os.remove(path)


def write_png(output_dir, job, rgb_image, settings):
    """Saves one image as grayscale PNG with its metadata row inside; returns the row."""
    row = dict(settings, file_name=job.file_name, class_name=job.class_name, index=job.index, **job.record())
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_TEXT_KEY, json.dumps(row, sort_keys=True))
    # X-rays are single-channel; ITU-R 601 luma keeps what the decoder drew.
    image = Image.fromarray(rgb_image).convert("L")
    path = os.path.join(output_dir, job.file_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path, temp_suffix=PARTIAL_SUFFIX) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return row


def read_png_metadata(path):
    """The metadata row stored in one of our PNGs, or a `UserError` for any other file."""
    try:
        with Image.open(path) as image:
            text = image.info.get(PNG_TEXT_KEY)  # Text chunks come before the pixels: no decode.
    except OSError as error:
        raise UserError(f"{path} is not a readable PNG ({error}); delete it and run again to regenerate it") from None
    if text is None:
        raise UserError(
            f"{path} has no generation record, so it was not made by this tool; move it out of the dataset folder"
        )
    return json.loads(text)


def write_index(output_dir, grid_images_per_class=4):
    """Rebuilds `metadata.csv` and `sample_grid.png` from the PNGs in `output_dir` (the merge step).

    Returns the rows. Run it when no shard is writing (it clears all leftover partial files).
    """
    remove_partial_files(output_dir)
    paths = sorted(glob.glob(os.path.join(output_dir, "*", "*.png")))
    rows = [read_png_metadata(path) for path in paths]
    if not rows:
        raise UserError(f"{output_dir} holds no generated images yet; run the generator first")
    for path, row in zip(paths, rows):
        if os.path.relpath(path, output_dir).replace(os.sep, "/") != row["file_name"]:
            raise UserError(
                f"{path} says it is {row['file_name']!r}; a file was moved or renamed, put it back or delete it"
            )
    columns = ["file_name", "class_name", "index"] + sorted(set().union(*rows) - {"file_name", "class_name", "index"})
    write_csv(os.path.join(output_dir, METADATA_FILE), rows, columns)
    _write_grid(output_dir, rows, grid_images_per_class)
    return rows


def _write_grid(output_dir, rows, per_class):
    images = grid_rows(output_dir, rows, per_class)
    weight_sources = sorted({row["weight_source"] for row in rows})
    classes = {row["class_name"] for row in rows}
    title = f"{len(rows)} images, {len(classes)} classes\nweights: {', '.join(weight_sources)}"
    if any(row.get("source") for row in rows):
        title += f"\nfirst column: the real image; then its variations at strength {rows[0]['strength']}"
    ncols = max(len(row_images) for row_images in images.values())
    save_labelled_grid(os.path.join(output_dir, GRID_FILE), images, ncols, title=title)


def grid_rows(output_dir, rows, per_class):
    """{label: uint8 images} of the sample grid: up to `per_class` images per class; for
    variations, a row per source image (the first `per_class` of each class): the source, then
    up to `per_class` of its variations."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["class_name"], os.path.basename(row.get("source") or "")].append(row)
    images, rows_of_class = {}, collections.Counter()
    for (class_name, source), members in sorted(groups.items()):
        rows_of_class[class_name] += 1
        if rows_of_class[class_name] > per_class:
            continue
        label = f"{class_name}\n{source}" if source else class_name
        images[label] = [_source_thumbnail(members[0])] if source else []
        for row in members[:per_class]:
            with Image.open(os.path.join(output_dir, row["file_name"])) as image:
                images[label].append(np.asarray(image))
    return images


def _source_thumbnail(row):
    """A variation's source image as the run read it, or a blank one when it is no longer there."""
    path = os.path.join(row["init_images"], row["source"])
    if not os.path.isfile(path):
        return np.zeros((row["height"], row["width"]), dtype=np.uint8)
    return np.round(read_grayscale_images([path], row["height"])[0, ..., 0] * 255).astype(np.uint8)
