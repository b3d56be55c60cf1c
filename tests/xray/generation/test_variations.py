"""Image-to-image on stand-in networks (helpers/standin_sd.py): the schedule's share, the plan
(counts, seeds, prompts), masks, the dataset's rows and grid, batches, shards, resume, and bad
input. Equality with diffusers' pipelines on SD 1.x's real networks is
xray/formats/test_diffusers_parity.py's."""

import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from genlab.errors import UserError
from genlab.files import file_digest, read_csv
from xray.config import VariationConfig, XrayConfig, steps_run
from xray.data.image_folder import read_grayscale_images
from xray.data.prompts import ClassPrompt
from xray.generation import dataset
from xray.generation.generate import generate_dataset, start_from_sources
from xray.generation.variations import find_sources, plan_variations
from xray.sd.sampler import Variation, add_noise, initial_noise, sample_latents, variation_timesteps

from helpers.image_folders import assert_same_images, folder_pixels, make_shapes_folder
from helpers.programs import kill_when, start_standin
from helpers.standin_sd import (
    VARY_KILL_CONFIG,
    VARY_KILL_PROMPTS,
    image_encoder,
    standin_models,
    vary_kill_variations,
)

PROMPTS = [ClassPrompt("circle", "X-ray of a circle"), ClassPrompt("square", "X-ray of a square", "color")]
CONFIG = XrayConfig(batch_size=2, steps=4, negative_prompt="")


@pytest.fixture(scope="module")
def networks(clip_tokenizer):
    """The stand-ins, and a stand-in VAE encoder, built in the kill test's program's order."""
    return standin_models(clip_tokenizer), image_encoder()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Three 160-px shapes per class: centre-cropped and resized to the 128 px the networks take."""
    return make_shapes_folder(tmp_path_factory.mktemp("real") / "real", 3, classes=("circle", "square"), size=160)


@pytest.mark.parametrize(
    "steps, strength, run", [(10, 0.3, 3), (10, 0.75, 7), (10, 1.0, 10), (25, 0.5, 12), (4, 0.26, 1)]
)
def test_the_last_int_steps_times_strength_steps_run(networks, steps, strength, run):
    """diffusers' get_timesteps: min(int(steps * strength), steps) of text-to-image's timesteps, the last ones."""
    schedule = networks[0].schedule
    assert steps_run(steps, strength) == run
    assert variation_timesteps(schedule, steps, strength).tolist() == schedule.timesteps(steps)[steps - run :].tolist()


@pytest.mark.parametrize(
    "steps, strength, message",
    [
        (10, 0.0, "--strength=0 is not in (0, 1]"),
        (10, 1.5, "--strength=1.5 is not in (0, 1]"),
        (10, 0.05, "no denoising step"),
    ],
)
def test_a_strength_that_runs_nothing_is_refused(steps, strength, message):
    with pytest.raises(UserError, match=re.escape(message)):
        steps_run(steps, strength)


def test_each_class_varies_each_image_or_cycles_to_its_count(real, tmp_path):
    sources = find_sources(real)
    jobs = plan_variations(sources, PROMPTS, VariationConfig(real, variations_per_image=2), CONFIG)
    assert [job.file_name for job in jobs[:7]] == [f"circle/circle_{i:04d}.png" for i in range(6)] + [
        "square/square_0000.png"
    ]
    circles = [job for job in jobs if job.class_name == "circle"]
    assert [job.source.path for job in circles] == [f"circle/circle_{i % 3:03d}.png" for i in range(6)]
    assert [job.negative_prompt for job in jobs] == [""] * 6 + ["color"] * 6  # A prompt's own negative prompt wins.
    assert len({job.seed for job in jobs}) == 12
    filled = plan_variations(sources, PROMPTS, VariationConfig(real, images_per_class=7), CONFIG)
    assert [job.source.path[-7:] for job in filled[:7]] == ["000.png", "001.png", "002.png"] * 2 + ["000.png"]
    assert [job.seed for job in filled[:6]] == [job.seed for job in circles]

    # A variation's seed is its source's content and its number: not its name, nor the folder's other files.
    moved = tmp_path / "moved"
    shutil.copytree(real, moved)
    os.rename(moved / "circle" / "circle_002.png", moved / "circle" / "a_first.png")
    Image.new("L", (160, 160), 99).save(moved / "circle" / "circle_001b.png")
    replanned = plan_variations(
        find_sources(str(moved)), PROMPTS, VariationConfig(str(moved), variations_per_image=2), CONFIG
    )
    seeds = {(job.source.sha256, job.seed) for job in replanned}
    assert {(job.source.sha256, job.seed) for job in circles} <= seeds


def test_a_class_without_a_prompt_is_named(real):
    with pytest.raises(UserError, match="class 'square' has no entry in the prompt file"):
        plan_variations(find_sources(real), PROMPTS[:1], VariationConfig(real), CONFIG)


def test_strength_one_is_text_to_image_from_the_noised_source_and_masks_blend_as_diffusers_do(networks, real):
    models, encoder = networks
    jobs = plan_variations(find_sources(real), PROMPTS, VariationConfig(real, strength=1.0), CONFIG)[:2]
    start = start_from_sources(encoder, jobs, 128)
    noise = np.stack([initial_noise(job.seed, 128) for job in jobs])
    context = np.random.default_rng(0).standard_normal((2, 77, 32)).astype(np.float32)
    uncond = np.zeros_like(context)

    def sample(noise, variation=None):
        return sample_latents(models, noise, context, uncond, CONFIG.steps, 7.5, variation=variation)

    first = models.schedule.timesteps(CONFIG.steps)[0]
    noised = add_noise(start.latents, noise, models.schedule.alphas_cumprod[first])
    np.testing.assert_array_equal(sample(noise, start), sample(noised))
    assert np.abs(sample(noise, start) - sample(noise)).max() > 1e-3  # The source still shows through.

    white, black = np.ones_like(start.latents[..., :1]), np.zeros_like(start.latents[..., :1])
    np.testing.assert_array_equal(sample(noise, Variation(start.latents, 1.0, white)), sample(noise))
    np.testing.assert_array_equal(sample(noise, Variation(start.latents, 0.5, black)), start.latents)
    half = np.concatenate([white[:, :8], black[:, 8:]], axis=1)
    painted = sample(noise, Variation(start.latents, 0.5, half))
    np.testing.assert_array_equal(painted[:, 8:], start.latents[:, 8:])
    assert np.abs(painted[:, :8] - start.latents[:, :8]).min() > 0


def test_masks_take_the_top_left_pixel_of_each_latents_block(networks, real, tmp_path):
    masks = tmp_path / "masks"
    for paths in find_sources(real).values():
        for source in paths:
            pixels = np.zeros((160, 160), dtype=np.uint8)
            pixels[:80] = 255  # The upper half: centre-cropped and resized, the upper 64 of 128 rows.
            (masks / source.path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(masks / source.path)
    jobs = plan_variations(find_sources(real, str(masks)), PROMPTS, VariationConfig(real, masks=str(masks)), CONFIG)
    start = start_from_sources(networks[1], jobs[:2], 128)
    assert start.mask.shape == (2, 16, 16, 1)
    assert start.mask[:, :8].min() == 1 and start.mask[:, 8:].max() == 0
    assert jobs[0].record()["mask"] == "circle/circle_000.png" and len(jobs[0].record()["mask_sha256"]) == 64


@pytest.fixture(scope="module")
def varied(networks, real, tmp_path_factory):
    out = tmp_path_factory.mktemp("varied") / "data"
    variations = VariationConfig(real, strength=0.5, variations_per_image=2)
    result = generate_dataset(*networks[:1], PROMPTS, CONFIG, str(out), False, variations, networks[1])
    assert (result.made, result.skipped, result.indexed) == (12, 0, True)
    return out, variations


def test_the_dataset_names_each_images_source_strength_and_mask(real, varied):
    out, _ = varied
    rows = read_csv(out / dataset.METADATA_FILE)
    assert [row["file_name"] for row in rows] == sorted(folder_pixels(out))
    first = rows[0]
    assert (first["source"], first["strength"], first["mask"]) == ("circle/circle_000.png", "0.5", "")
    assert first["source_sha256"] == file_digest(os.path.join(real, "circle", "circle_000.png"))
    assert first["init_images"] == os.path.abspath(real)
    assert (out / dataset.GRID_FILE).is_file()
    grid = dataset.grid_rows(str(out), [dataset.read_png_metadata(out / row["file_name"]) for row in rows], 2)
    assert list(grid) == [f"{shape}\n{shape}_00{i}.png" for shape in ("circle", "square") for i in range(2)]
    pixels = folder_pixels(out)
    for label, images in grid.items():  # The source as the networks saw it, then its two variations.
        shape, name = label.split("\n")
        expected = read_grayscale_images([os.path.join(real, shape, name)], 128)[0, ..., 0]
        np.testing.assert_allclose(images[0], np.round(expected * 255), atol=0.5)
        variations = [row["file_name"] for row in rows if row["source"] == f"{shape}/{name}"]
        assert len(variations) == 2 and all(np.array_equal(a, pixels[f]) for a, f in zip(images[1:], variations))


def test_variations_are_the_same_whatever_the_batches_and_shards(networks, varied, tmp_path):
    out, variations = varied
    sharded = tmp_path / "sharded"
    for index in range(3):
        config = XrayConfig(**{**CONFIG.__dict__, "batch_size": 1, "num_shards": 3, "shard_index": index})
        assert generate_dataset(networks[0], PROMPTS, config, str(sharded), False, variations, networks[1]).made == 4
    dataset.write_index(str(sharded))
    assert_same_images(folder_pixels(sharded), folder_pixels(out))
    os.remove(sharded / "square" / "square_0004.png")
    again = generate_dataset(networks[0], PROMPTS, CONFIG, str(sharded), False, variations, networks[1])
    assert (again.made, again.skipped) == (1, 11)
    assert_same_images(folder_pixels(sharded), folder_pixels(out))
    # Another strength would mix other images into the folder.
    with pytest.raises(UserError, match="made with strength=0.5, this run asks for 0.7"):
        generate_dataset(
            networks[0],
            PROMPTS,
            CONFIG,
            str(sharded),
            False,
            VariationConfig(variations.init_images, 0.7, 2),
            networks[1],
        )


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "has no class sub-folders"),
        ({"circle/notes.txt": b"x"}, "holds no PNG or JPEG images"),
        ({"circle/broken.png": b"not a png"}, "broken.png (--init_images) is not a readable PNG or JPEG image"),
    ],
)
def test_bad_init_folders_are_named(tmp_path, layout, message):
    for name, data in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match=re.escape(message)):
        find_sources(str(tmp_path))


@pytest.mark.parametrize(
    "mask, message",
    [
        (None, "--masks=.* lacks circle/circle_000.png, the mask of that image"),
        (Image.new("L", (100, 160), 255), "is 100x160 pixels, its image 160x160"),
        (Image.new("RGB", (160, 160), "white"), r"is not grayscale \(PIL mode RGB\)"),
    ],
)
def test_bad_masks_are_named(real, tmp_path, mask, message):
    (tmp_path / "circle").mkdir()
    (tmp_path / "square").mkdir()
    for path in [p for paths in find_sources(real).values() for p in paths][1:]:
        Image.new("L", (160, 160), 255).save(tmp_path / path.path)
    if mask is not None:
        mask.save(tmp_path / "circle" / "circle_000.png")
    with pytest.raises(UserError, match=message):
        find_sources(real, str(tmp_path))


@pytest.mark.slow
def test_a_variation_run_killed_mid_write_resumes_to_what_an_uninterrupted_run_makes(
    networks, real, tmp_path, clip_bpe_path
):
    out = tmp_path / "killed"
    process = start_standin("vary", out, clip_bpe_path, real)
    kill_when(process, lambda: len(list(out.glob("*/*.png"))) >= 2, timeout=120)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}
    assert 2 <= len(kept) < 30, "the kill should land mid-run"
    variations = vary_kill_variations(real)
    result = generate_dataset(
        networks[0], VARY_KILL_PROMPTS, VARY_KILL_CONFIG, str(out), False, variations, networks[1]
    )
    assert (result.made, result.skipped) == (30 - len(kept), len(kept))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())
    uninterrupted = tmp_path / "uninterrupted"
    generate_dataset(
        networks[0], VARY_KILL_PROMPTS, VARY_KILL_CONFIG, str(uninterrupted), False, variations, networks[1]
    )
    assert_same_images(folder_pixels(out), folder_pixels(uninterrupted))
