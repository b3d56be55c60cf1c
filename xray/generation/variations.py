"""Image-to-image: real X-rays varied under their class's prompt (`genlab-xray --init_images`).

    INIT/<class>/*.png|jpg      the real images, in the layout the judge and the fine-tuner read
    MASKS/<class>/<same name>   optional: white where the image is regenerated, black where kept

A class gets `variations_per_image` variations of each of its images, or is filled up to
`images_per_class` by cycling through them, so a rare class of 30 images can become 500.
A variation's seed derives from the run seed, its source file's SHA-256 and its number: it is
the same whatever the batch, the shard or the other files in the folder.

No TensorFlow here: the program checks every image and mask before it loads any network.
"""

import dataclasses
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from genlab.errors import UserError
from genlab.files import file_digest
from xray.config import steps_run
from xray.data.image_folder import class_folders, read_image
from xray.generation.dataset import ImageJob, image_seed

_GRAYSCALE_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L")


@dataclasses.dataclass(frozen=True)
class Source:
    """A real image a variation starts from, and its mask."""

    root: str  # The --init_images folder, absolute.
    path: str  # Inside it, "/"-separated: what the metadata names.
    sha256: str
    mask_file: str = ""  # The mask's file, or "" for none.
    mask: str = ""  # The mask's path inside --masks.
    mask_sha256: str = ""

    @property
    def file(self):
        return os.path.join(self.root, self.path)

    def record(self):
        return {
            "init_images": self.root,
            "source": self.path,
            "source_sha256": self.sha256,
            "mask": self.mask,
            "mask_sha256": self.mask_sha256,
        }


def find_sources(init_images, masks=""):
    """{class name: [Source]} for the class folders of `init_images`. Every image's header and
    every mask is checked now, so a bad file stops the run with one line before any work."""
    classes = class_folders(init_images, "--init_images")
    if masks and not os.path.isdir(masks):
        raise UserError(f"--masks={masks} is not a folder; it holds a mask for each image, with the image's path")
    root = os.path.abspath(init_images)
    return {name: [_source(root, masks, path) for path in paths] for name, paths in classes.items()}


def _source(root, masks, path):
    relative = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    size, _ = _header(path, "--init_images")
    if not masks:
        return Source(root, relative, file_digest(path))
    mask_file = os.path.abspath(os.path.join(masks, relative))
    if not os.path.isfile(mask_file):
        raise UserError(
            f"--masks={masks} lacks {relative}, the mask of that image; add it (white where the image is regenerated, "
            "black where it is kept)"
        )
    mask_size, mode = _header(mask_file, "--masks")
    if mask_size != size:
        raise UserError(
            f"mask {mask_file} is {mask_size[0]}x{mask_size[1]} pixels, its image {size[0]}x{size[1]}; "
            "make the mask the image's size"
        )
    if mode not in _GRAYSCALE_MODES:
        raise UserError(
            f"mask {mask_file} is not grayscale (PIL mode {mode}); save it as a single-channel image, white where "
            "the image is regenerated"
        )
    return Source(root, relative, file_digest(path), mask_file, relative, file_digest(mask_file))


def _header(path, flag):
    """(width, height) and PIL's mode of an image file, from its header alone."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{path} ({flag}) is not a readable PNG or JPEG image ({error}); fix or remove it") from None


def plan_variations(sources, class_prompts, variations, config):
    """Every variation of the dataset, class by class, in a fixed order (`ImageJob`s with a source).

    Each class of `sources` takes its prompt from `class_prompts` (a prompt file's `count` is for
    text-to-image, and is not used). `variations` is an `xray.config.VariationConfig`, `config` the
    run's `XrayConfig`.
    """
    steps_run(config.steps, variations.strength)
    prompts = {p.class_name: p for p in class_prompts}
    missing = [name for name in sources if name not in prompts]
    if missing:
        raise UserError(
            f"--init_images class {missing[0]!r} has no entry in the prompt file; add one with class: {missing[0]}, "
            "or leave --prompt_file out to caption each class with --caption_template"
        )
    jobs = []
    for class_name, class_sources in sources.items():
        prompt = prompts[class_name]
        negative_prompt = prompt.negative_prompt if prompt.negative_prompt is not None else config.negative_prompt
        count = variations.images_per_class or len(class_sources) * variations.variations_per_image
        for index in range(count):
            source, number = class_sources[index % len(class_sources)], index // len(class_sources)
            seed = image_seed(config.seed, source.sha256, number)
            jobs.append(ImageJob(class_name, index, prompt.prompt, negative_prompt, seed, source, variations.strength))
    return jobs


def read_sources(jobs, image_size):
    """The jobs' source images in Stable Diffusion's range [-1, 1], (B, S, S, 3) (grayscale repeated),
    and their masks binarized at one half as diffusers' are, (B, S, S, 1) in {0, 1}, or None."""
    shape = (image_size, image_size, 3)
    pixels = np.stack([np.broadcast_to(read_image(job.source.file, image_size), shape) for job in jobs])
    if not jobs[0].source.mask_file:
        return pixels * 2.0 - 1.0, None
    masks = np.stack([read_image(job.source.mask_file, image_size) for job in jobs])
    return pixels * 2.0 - 1.0, (masks >= 0.5).astype(np.float32)
