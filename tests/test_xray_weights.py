"""Weight sources: local folders round-trip KerasCV's file format; bad sources fail with one line."""

import h5py
import numpy as np
import pytest

from genlab.errors import UserError
from xray import weights
from xray.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents
from xray.weights import KERAS_CV_FILES, load_stable_diffusion, load_tokenizer, save_keras_cv_weights


def _save_folder(models, folder):
    for network, (name, _) in KERAS_CV_FILES.items():
        save_keras_cv_weights(getattr(models, network), str(folder / name))


@pytest.mark.parametrize("make_folder, message", [
    (lambda folder: None, "is not a folder"),
    (lambda folder: folder.mkdir(), "lacks kcv_encoder.h5, kcv_diffusion_model.h5, kcv_decoder.h5"),
    (lambda folder: [folder.mkdir()] + [(folder / name).write_bytes(b"not hdf5") for name, _ in KERAS_CV_FILES.values()],
     "kcv_encoder.h5, kcv_diffusion_model.h5, kcv_decoder.h5 is not an HDF5 weight file"),
])
def test_local_folder_problems_name_the_flag(tmp_path, clip_bpe_path, make_folder, message):
    folder = tmp_path / "weights"
    make_folder(folder)
    with pytest.raises(UserError, match=message) as error:
        load_stable_diffusion(128, "local", str(folder), clip_bpe_path)
    assert "--weights_path" in str(error.value)


def test_offline_download_stops_with_the_offline_flags(tmp_path, monkeypatch, clip_bpe_path):
    # A name nothing has cached and an address that refuses at once: the offline case, hermetic.
    monkeypatch.setattr(weights, "_HF", "http://127.0.0.1:9/")
    monkeypatch.setattr(weights, "KERAS_CV_FILES", {"text_encoder": ("genlab-test-absent.h5", "0" * 64)})
    with pytest.raises(UserError, match="could not download genlab-test-absent.h5.*--weights=local --weights_path=DIR.*--weights=random"):
        load_stable_diffusion(128, "keras_cv", tokenizer_path=clip_bpe_path)


@pytest.mark.parametrize("size", [0, 100, 200])
def test_image_size_must_be_a_multiple_of_128(size):
    with pytest.raises(UserError, match=f"--image_size={size} is not a positive multiple of 128"):
        load_stable_diffusion(size, "random")


def test_tokenizer_file_problems_name_the_flag(tmp_path):
    with pytest.raises(UserError, match="--tokenizer_path"):
        load_tokenizer(str(tmp_path / "missing.txt.gz"))
    bad = tmp_path / "bpe.txt.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(UserError, match="not the gzipped merges file"):
        load_tokenizer(str(bad))


def test_local_folder_round_trips_keras_cv_files(random_sd, tmp_path, clip_bpe_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    _save_folder(random_sd, folder)
    loaded = load_stable_diffusion(128, "local", str(folder), clip_bpe_path)
    assert loaded.weight_source.startswith("local (") and not loaded.is_random
    for network in ("text_encoder", "diffusion_model", "decoder"):
        for mine, theirs in zip(getattr(random_sd, network).weights, getattr(loaded, network).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_a_file_of_another_network_is_refused(random_sd, tmp_path, clip_bpe_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    save_keras_cv_weights(random_sd.decoder, str(folder / "kcv_encoder.h5"))
    for name in ("kcv_diffusion_model.h5", "kcv_decoder.h5"):
        h5py.File(folder / name, "w").close()
    with pytest.raises(UserError, match="kcv_encoder.h5' does not fit KerasCV's text_encoder"):
        load_stable_diffusion(128, "local", str(folder), clip_bpe_path)


@pytest.mark.parametrize("cpu_flags, expected", [
    ("fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni", "mixed_bfloat16"),
    ("fpu sse2 avx2 fma amx_bf16 amx_tile", "mixed_bfloat16"),
    ("fpu sse2 avx2 fma avx512f avx512_vnni", "float32"),  # AVX-512 alone has no bfloat16 arithmetic.
    (None, "float32"),  # No /proc/cpuinfo (macOS, Windows).
])
def test_auto_precision_follows_the_cpu(tmp_path, monkeypatch, cpu_flags, expected):
    monkeypatch.setattr(weights.tf.config, "list_physical_devices", lambda kind: [])
    cpuinfo = tmp_path / "cpuinfo"
    if cpu_flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {cpu_flags}\n")
    assert weights.resolve_precision("auto", str(cpuinfo)) == expected
    assert weights.resolve_precision("float32", str(cpuinfo)) == "float32"


def test_auto_precision_keeps_float32_on_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(weights.tf.config, "list_physical_devices", lambda kind: ["a GPU"] if kind == "GPU" else [])
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512_bf16\n")
    assert weights.resolve_precision("auto", str(cpuinfo)) == "float32"


@pytest.fixture(scope="module")
def random_sd_bfloat16(random_sd, clip_bpe_path):
    """`random_sd`'s networks and weights in bfloat16: what `--precision=auto` runs on CPUs
    with AVX-512 BF16 or AMX. Module-scoped, and this module runs last: each set of networks
    holds about 4 GB, and the suite's machines have 24."""
    models = load_stable_diffusion(128, "random", tokenizer_path=clip_bpe_path, precision="mixed_bfloat16")
    for name in ("text_encoder", "diffusion_model", "decoder"):  # Variable by variable: no 4 GB copy.
        for mine, source in zip(getattr(models, name).weights, getattr(random_sd, name).weights, strict=True):
            mine.assign(source)
    return models


@pytest.mark.parametrize("network", ["diffusion_model", "decoder"])
def test_bfloat16_networks_stay_close_to_float32(random_sd, random_sd_bfloat16, network):
    # What --precision=auto trades on bfloat16 CPUs: about 1.6% relative error per call
    # (random weights); a layer computing in the wrong dtype or skipping a cast would be far off.
    exact, fast = getattr(random_sd, network), getattr(random_sd_bfloat16, network)
    rng = np.random.default_rng(0)
    if network == "diffusion_model":
        inputs = [rng.standard_normal(shape).astype("float32") for shape in ((2, 16, 16, 4), (2, 320), (2, 77, 768))]
    else:
        inputs = rng.standard_normal((1, 16, 16, 4)).astype("float32")
    expected, got = np.asarray(exact(inputs)), np.asarray(fast(inputs), dtype="float32")
    relative_error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert 1e-4 < relative_error < 0.05  # Above 1e-4: it did compute in bfloat16.


def test_bfloat16_images_barely_depend_on_the_batch(random_sd, random_sd_bfloat16):
    # --precision=auto is bfloat16 on CPUs with AVX-512 BF16 or AMX: there an image made in a
    # batch and made alone may round differently, and both stay near the float32 image.
    def images(models, seeds):
        noise = np.stack([initial_noise(seed, 128) for seed in seeds])
        context, unconditional = np.repeat(encode_texts(models, ["Frontal chest X-ray of healthy lungs", ""])[:, None], len(seeds), axis=1)
        latents = sample_latents(models, noise, context, unconditional, num_steps=2, guidance_scale=7.5)
        return decode_to_uint8(models, latents).astype(np.int16)

    fast = random_sd_bfloat16
    batched, alone, exact = images(fast, [3, 4])[0], images(fast, [3])[0], images(random_sd, [3])[0]
    # Measured here (random weights, whose noise images are all fine detail): batched against
    # alone, 2.3 grey levels on average and 19 at most; bfloat16 against float32, 2.0 and 17.
    assert np.abs(batched - alone).mean() <= 4 and np.abs(batched - alone).max() <= 32
    assert 0 < np.abs(alone - exact).mean() <= 4 and np.abs(alone - exact).max() <= 32
