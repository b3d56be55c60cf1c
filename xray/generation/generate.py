"""Fills an X-ray dataset folder: plans the images, skips finished ones, samples the rest in batches."""

import dataclasses
import time

import keras
import keras_cv
import numpy as np
import tensorflow as tf

from xray.config import steps_run
from xray.generation import dataset
from xray.generation.variations import find_sources, plan_variations, read_sources
from xray.sd.sampler import (
    LATENT_DOWNSCALE,
    Variation,
    decode_to_uint8,
    encode_texts,
    initial_noise,
    sample_latents,
)

RANDOM_WEIGHTS_BANNER = (
    "*" * 78 + "\n"
    "*  RANDOM WEIGHTS: Stable Diffusion is untrained; every image will be noise.  *\n"
    "*  Use this for smoke tests and timing only, never as a dataset.              *\n" + "*" * 78
)


@dataclasses.dataclass
class GenerationResult:
    made: int  # Images this run wrote.
    skipped: int  # Images of this shard that already existed.
    seconds: float
    indexed: bool  # Whether metadata.csv and the grid were rebuilt (single-shard runs).


def pixel_settings(models, config):
    """What every metadata row records about how its image was made, besides its prompt and seed."""
    return {
        "steps": config.steps,
        "guidance_scale": config.guidance_scale,
        "height": models.image_size,
        "width": models.image_size,
        "sampler": models.schedule.describe(),
        "precision": models.precision,
        "numerics": models.numerics,
        "weight_source": models.weight_source,
        "model": "Stable Diffusion v1 (KerasCV networks)",
        "keras_cv_version": keras_cv.__version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }


def generate_dataset(
    models, class_prompts, config, output_dir, verbose=True, variations=None, image_encoder=None, sources=None
):
    """Makes this shard's missing images in `output_dir`; a single-shard run then writes the index.

    With `variations` (an `xray.config.VariationConfig`) and the VAE's `image_encoder`
    (`xray.weights.load_image_encoder`), the real images of its folder are varied instead, each
    class under its prompt in `class_prompts` (image-to-image, `xray.generation.variations`).
    `sources`: `find_sources`' answer for that folder, when the caller has it (every file hashed once).
    """
    start = time.perf_counter()
    if variations is None:
        planned = dataset.plan_images(class_prompts, config.images_per_prompt, config.seed, config.negative_prompt)
        steps = config.steps
    else:
        if image_encoder is None:
            raise ValueError("varying real images needs the VAE's image_encoder")
        sources = sources or find_sources(variations.init_images, variations.masks)
        planned = plan_variations(sources, class_prompts, variations, config)
        steps = steps_run(config.steps, variations.strength)
    jobs = dataset.shard(planned, config.num_shards, config.shard_index)
    settings = pixel_settings(models, config)
    dataset.remove_partial_files(output_dir, jobs)
    pending = dataset.pending_jobs(output_dir, jobs, settings)
    if verbose:
        if models.is_random:
            print(RANDOM_WEIGHTS_BANNER)
        print(f"{len(jobs)} images in this shard: {len(jobs) - len(pending)} already done, {len(pending)} to make.")

    contexts = _encode_unique(models, [text for job in pending for text in (job.prompt, job.negative_prompt)])
    # Counts images, moving by a fraction of the batch each U-Net step (decoding and writing
    # are the last fraction), so the bar moves at 512 px on a CPU too; Keras prints seconds
    # per image and the ETA.
    progress = keras.utils.Progbar(len(pending), unit_name="image", verbose=1 if verbose else 0)
    made = 0
    for first in range(0, len(pending), config.batch_size):
        batch = pending[first : first + config.batch_size]
        padded = _filled_up(batch, config.batch_size)
        latents = sample_latents(
            models,
            noise=np.stack([initial_noise(job.seed, models.image_size) for job in padded]),
            context=np.stack([contexts[job.prompt] for job in padded]),
            unconditional_context=np.stack([contexts[job.negative_prompt] for job in padded]),
            num_steps=config.steps,
            guidance_scale=config.guidance_scale,
            on_step=lambda step: progress.update(made + len(batch) * step / (steps + 1)),
            variation=None if variations is None else start_from_sources(image_encoder, padded, models.image_size),
        )
        for job, image in zip(batch, decode_to_uint8(models, latents)):
            dataset.write_png(output_dir, job, image, settings)
        made += len(batch)
        progress.update(made)

    indexed = config.num_shards == 1 and bool(jobs)
    if indexed:
        dataset.write_index(output_dir, config.grid_images_per_class)
    return GenerationResult(made, len(jobs) - len(pending), time.perf_counter() - start, indexed)


def start_from_sources(image_encoder, jobs, image_size):
    """The `Variation` the jobs' source images give: the VAE encoder's latents of them (the mean
    of its distribution, which KerasCV's encoder gives; diffusers draws a sample, whose spread is
    small beside the noise any strength that runs a step adds) and their masks at the latents' size."""
    pixels, masks = read_sources(jobs, image_size)
    latents = np.asarray(image_encoder.predict_on_batch(pixels), dtype=np.float32)
    return Variation(latents, jobs[0].strength, None if masks is None else latent_masks(masks))


def latent_masks(masks):
    """Masks (B, H, W, 1) at the latents' size: each latent takes its 8x8 block's top-left pixel,
    as diffusers' nearest-neighbour resize does."""
    return masks[:, ::LATENT_DOWNSCALE, ::LATENT_DOWNSCALE]


def _encode_unique(models, texts, chunk=8):
    """Text-encoder states for each distinct text, encoded `chunk` at a time."""
    unique = list(dict.fromkeys(texts))
    states = {}
    for first in range(0, len(unique), chunk):
        part = unique[first : first + chunk]
        states.update(zip(part, encode_texts(models, _filled_up(part, chunk))))
    return states


def _filled_up(items, size):
    """`items` filled up to `size` with copies of its last item, whose results are dropped.

    Every network call then has one batch size, so no graph is traced (or compiled) a second
    time for a short last batch, and genlab-xray's oneDNN kernels, which each keep a copy of
    their weights, are not duplicated with it.
    """
    return items + items[-1:] * (size - len(items))
