"""KerasCV's real Stable Diffusion networks (random weights, 128 px): the integration tests.

One float32 set serves the module; each test frees whatever else it builds. Everything that
does not depend on the networks themselves runs on stand-ins (test_xray_generate.py).
"""

import gc

import h5py
import numpy as np
import pytest

from conftest import fingerprint
from genlab.errors import UserError
from xray import dataset, weights
from xray.generate import XrayConfig, generate_dataset
from xray.keras_cv_files import KERAS_CV_FILES, save_keras_cv_weights
from xray.networks import NETWORKS, build_network
from xray.prompts import ClassPrompt
from xray.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents
from xray.weights import load_stable_diffusion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def random_sd(clip_bpe_path):
    """float32, not the default `auto`, so every machine tests the same numbers (`auto` is
    bfloat16 on some CPUs, tested below)."""
    return load_stable_diffusion(128, "random", tokenizer_path=clip_bpe_path, precision="float32")


def test_generates_a_dataset_on_the_real_networks(random_sd, tmp_path):
    prompts = [ClassPrompt("chest", "Frontal chest X-ray", count=2)]
    result = generate_dataset(random_sd, prompts, XrayConfig(batch_size=2, steps=2), str(tmp_path), verbose=False)
    assert (result.made, result.indexed) == (2, True)
    rows = dataset.write_index(str(tmp_path))
    assert [row["file_name"] for row in rows] == ["chest/chest_0000.png", "chest/chest_0001.png"]
    assert rows[0]["weight_source"].startswith("random (UNTRAINED") and rows[0]["precision"] == "float32"


def test_weight_files_round_trip(random_sd, tmp_path):
    # KerasCV's own file layout, written, then read back into the same networks after every
    # weight was changed: the networks come back bit for bit (and stay usable by later tests).
    for name in NETWORKS:
        network, path = getattr(random_sd, name), tmp_path / KERAS_CV_FILES[name][0]
        original = fingerprint(network)
        save_keras_cv_weights(network, str(path))
        for weight in network.weights:
            weight.assign(weight + 1.0)
        assert all(a != b for a, b in zip(fingerprint(network), original))
        weights._load_keras_cv_file(network, str(path))
        assert fingerprint(network) == original, name
        path.unlink()


def test_a_file_of_another_network_is_refused(random_sd, tmp_path, clip_bpe_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    save_keras_cv_weights(random_sd.decoder, str(folder / "kcv_encoder.h5"))
    for name in ("kcv_diffusion_model.h5", "kcv_decoder.h5"):
        h5py.File(folder / name, "w").close()
    with pytest.raises(UserError, match="kcv_encoder.h5' does not fit KerasCV's text_encoder"):
        load_stable_diffusion(128, "local", str(folder), clip_bpe_path)


@pytest.fixture
def bfloat16_networks(random_sd):
    """`random_sd`'s U-Net and decoder with the same weights, built under `mixed_bfloat16`: what
    `--precision=auto` runs on CPUs with AVX-512 BF16 or AMX. Freed after the test."""
    networks = {}
    for name in ("diffusion_model", "decoder"):
        networks[name] = build_network(name, 128, "mixed_bfloat16")
        for mine, source in zip(networks[name].weights, getattr(random_sd, name).weights, strict=True):
            mine.assign(source)  # Variable by variable: no second whole copy in between.
    yield networks
    networks.clear()
    gc.collect()


def test_bfloat16_stays_close_to_float32(random_sd, bfloat16_networks):
    # What --precision=auto trades on bfloat16 CPUs: a small relative error per call; a layer
    # computing in the wrong dtype, or skipping a cast, would be far off.
    rng = np.random.default_rng(0)
    unet_inputs = [rng.standard_normal(shape).astype("float32") for shape in ((2, 16, 16, 4), (2, 320), (2, 77, 768))]
    latents = rng.standard_normal((1, 16, 16, 4)).astype("float32")
    for name, inputs in (("diffusion_model", unet_inputs), ("decoder", latents)):
        expected = np.asarray(getattr(random_sd, name)(inputs))
        got = np.asarray(bfloat16_networks[name](inputs), dtype="float32")
        relative_error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
        assert 1e-4 < relative_error < 0.05, name  # Above 1e-4: it did compute in bfloat16.

    # An image made in a batch and made alone may round differently in bfloat16; both stay
    # near the float32 image (which is the same either way: test_xray_generate.py).
    fast = weights.StableDiffusionModels(**{**random_sd.__dict__, **bfloat16_networks, "precision": "mixed_bfloat16"})

    def images(models, seeds):
        noise = np.stack([initial_noise(seed, 128) for seed in seeds])
        context, unconditional = np.repeat(encode_texts(models, ["Frontal chest X-ray of healthy lungs", ""])[:, None], len(seeds), axis=1)
        latents = sample_latents(models, noise, context, unconditional, num_steps=2, guidance_scale=7.5)
        return decode_to_uint8(models, latents).astype(np.int16)

    batched, alone, exact = images(fast, [3, 4])[0], images(fast, [3])[0], images(random_sd, [3])[0]
    assert np.abs(batched - alone).mean() <= 4 and np.abs(batched - alone).max() <= 32
    assert 0 < np.abs(alone - exact).mean() <= 4 and np.abs(alone - exact).max() <= 32
