"""Generation logic on stand-in networks (tests/standin_sd.py): sampler, seeds, batches, shards, resume.

None of it depends on Stable Diffusion's weights; the real networks are exercised in
xray/sd/test_networks.py and by the program's own test.
"""

import os

import keras
import numpy as np
import pytest
from keras_cv.src.models.stable_diffusion.stable_diffusion import StableDiffusion

from xray.config import XrayConfig
from xray.data.prompts import ClassPrompt
from xray.generation import dataset
from xray.generation.generate import generate_dataset
from xray.sd.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents

from helpers.image_folders import assert_same_images, folder_pixels
from helpers.programs import kill_when, start_standin
from helpers.standin_sd import KILL_TEST_CONFIG, KILL_TEST_PROMPTS, standin_models

PROMPTS = [
    ClassPrompt("chest_normal", "Frontal chest X-ray of healthy lungs"),
    ClassPrompt("radius_fracture", "X-ray of a fractured radius bone", "color"),
]
CONFIG = XrayConfig(images_per_prompt=3, batch_size=3, steps=2, negative_prompt="")


@pytest.fixture(scope="module")
def models(clip_tokenizer):
    return standin_models(clip_tokenizer)


@pytest.fixture(scope="module")
def whole_dataset(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("xray") / "data"
    result = generate_dataset(models, PROMPTS, CONFIG, str(out), verbose=False)
    assert (result.made, result.skipped, result.indexed) == (6, 0, True)
    return out


def test_sampler_is_keras_cv_generate_image(models):
    # KerasCV's own pipeline over the same networks, the same prompt and the same noise.
    keras_cv_sd = StableDiffusion(128, 128, jit_compile=False)
    keras_cv_sd._text_encoder, keras_cv_sd._diffusion_model = models.text_encoder, models.diffusion_model
    keras_cv_sd._decoder, keras_cv_sd._tokenizer = models.decoder, models.tokenizer
    noise = initial_noise(seed=3, image_size=128)[None]
    expected = keras_cv_sd.generate_image(
        keras_cv_sd.encode_text(PROMPTS[0].prompt), num_steps=3, diffusion_noise=noise, unconditional_guidance_scale=7.5
    )
    context, unconditional = encode_texts(models, [PROMPTS[0].prompt, ""])
    latents = sample_latents(models, noise, context[None], unconditional[None], num_steps=3, guidance_scale=7.5)
    ours = decode_to_uint8(models, latents).astype(np.int16)
    assert ours.shape == (1, 128, 128, 3)
    assert np.abs(ours - expected).max() <= 1  # KerasCV truncates to uint8 where we round.
    # The guidance matters: without it (scale 1) the image is another one.
    unguided = decode_to_uint8(
        models, sample_latents(models, noise, context[None], unconditional[None], num_steps=3, guidance_scale=1.0)
    ).astype(np.int16)
    assert np.abs(unguided - expected).max() > 1


def test_writes_class_folders_metadata_and_grid(whole_dataset):
    assert sorted(os.listdir(whole_dataset)) == ["chest_normal", "metadata.csv", "radius_fracture", "sample_grid.png"]
    assert sorted(os.listdir(whole_dataset / "radius_fracture")) == [f"radius_fracture_000{i}.png" for i in range(3)]
    row = dataset.read_png_metadata(str(whole_dataset / "radius_fracture" / "radius_fracture_0001.png"))
    assert row["negative_prompt"] == "color" and row["weight_source"] == "stand-in (test networks)"
    assert (row["height"], row["steps"], row["guidance_scale"]) == (128, 2, 7.5)
    images = folder_pixels(whole_dataset)
    assert all(image.shape == (128, 128) for image in images.values())
    assert len({image.tobytes() for image in images.values()}) == 6  # Every image has its own noise.


def test_loads_with_keras_image_dataset_from_directory(whole_dataset):
    data = keras.utils.image_dataset_from_directory(
        str(whole_dataset), color_mode="grayscale", image_size=(128, 128), batch_size=4, shuffle=False
    )
    assert data.class_names == ["chest_normal", "radius_fracture"]
    labels = np.concatenate([y.numpy() for _, y in data])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    first = next(iter(data))[0].numpy()
    assert first.shape == (4, 128, 128, 1)
    np.testing.assert_array_equal(first[0, ..., 0], folder_pixels(whole_dataset)["chest_normal/chest_normal_0000.png"])


def test_shards_fill_the_same_dataset_and_any_image_regenerates_alone(models, whole_dataset, tmp_path):
    out = tmp_path / "sharded"
    for index in range(2):
        config = XrayConfig(**{**CONFIG.__dict__, "batch_size": 2, "num_shards": 2, "shard_index": index})
        result = generate_dataset(models, PROMPTS, config, str(out), verbose=False)
        assert (result.made, result.indexed) == (3, False)
    rows = dataset.write_index(str(out))
    assert [row["file_name"] for row in rows] == sorted(folder_pixels(whole_dataset))
    assert_same_images(folder_pixels(out), folder_pixels(whole_dataset))  # Same images whatever the batches and shards.

    lost = out / "chest_normal" / "chest_normal_0002.png"
    os.remove(lost)
    config = XrayConfig(**{**CONFIG.__dict__, "batch_size": 1})
    result = generate_dataset(models, PROMPTS, config, str(out), verbose=False)
    assert (result.made, result.skipped) == (1, 5)
    assert_same_images(folder_pixels(out), folder_pixels(whole_dataset))


def test_a_short_last_batch_is_filled_up_so_each_network_runs_at_one_batch_size(
    models, whole_dataset, tmp_path, monkeypatch
):
    batch_sizes = {}
    for name in ("text_encoder", "diffusion_model", "decoder"):
        network = getattr(models, name)
        monkeypatch.setattr(
            network,
            "predict_on_batch",
            lambda inputs, name=name, predict=network.predict_on_batch: (
                batch_sizes.setdefault(name, set()).add(len(keras.tree.flatten(inputs)[0])),
                predict(inputs),
            )[1],
        )
    config = XrayConfig(**{**CONFIG.__dict__, "batch_size": 4})  # Six images: four, then two and two copies.
    out = tmp_path / "filled_up"
    assert generate_dataset(models, PROMPTS, config, str(out), verbose=False).made == 6
    assert batch_sizes == {
        "text_encoder": {8},
        "diffusion_model": {8},
        "decoder": {4},
    }  # Three texts filled up to eight.
    assert_same_images(folder_pixels(out), folder_pixels(whole_dataset))


@pytest.mark.slow
def test_a_run_killed_mid_write_resumes_to_what_an_uninterrupted_run_makes(models, tmp_path, clip_bpe_path):
    out = tmp_path / "killed"
    process = start_standin("generate", out, clip_bpe_path)
    kill_when(process, lambda: len(list(out.glob("*/*.png"))) >= 2, timeout=120)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}
    total = 2 * KILL_TEST_CONFIG.images_per_prompt
    assert 2 <= len(kept) < total, "the kill should land mid-run"

    result = generate_dataset(models, KILL_TEST_PROMPTS, KILL_TEST_CONFIG, str(out), verbose=False)
    assert (result.made, result.skipped) == (total - len(kept), len(kept))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())  # Finished images are kept as they were.
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # No partial file is left.
    uninterrupted = tmp_path / "uninterrupted"
    generate_dataset(models, KILL_TEST_PROMPTS, KILL_TEST_CONFIG, str(uninterrupted), verbose=False)
    assert_same_images(folder_pixels(out), folder_pixels(uninterrupted))
    with open(out / dataset.METADATA_FILE) as f:
        assert len(f.read().splitlines()) == total + 1
