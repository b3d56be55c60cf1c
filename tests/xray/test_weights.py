"""Weight sources: bad sources fail with one line before any network is built; `auto` precision.

The sources that build KerasCV's real networks are tested in xray/sd/test_networks.py.
"""

import json
import shutil

import h5py
import pytest

from genlab.errors import UserError
from xray import weights
from xray.formats.keras_cv_files import CONVERSION_FILE, KERAS_CV_FILES, TOKENIZER_FILE
from xray.weights import load_stable_diffusion, load_tokenizer

from helpers import standin_sd


@pytest.mark.parametrize(
    "make_folder, message",
    [
        (lambda folder: None, "is not a folder"),
        (lambda folder: folder.mkdir(), "lacks kcv_encoder.h5, kcv_diffusion_model.h5, kcv_decoder.h5"),
        (
            lambda folder: (
                [folder.mkdir()] + [(folder / name).write_bytes(b"not hdf5") for name, _ in KERAS_CV_FILES.values()]
            ),
            "kcv_encoder.h5, kcv_diffusion_model.h5, kcv_decoder.h5 is not an HDF5 weight file",
        ),
    ],
)
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
    with pytest.raises(
        UserError,
        match="could not download genlab-test-absent.h5.*--weights=local --weights_path=DIR.*--weights=random",
    ):
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


@pytest.mark.parametrize(
    "cpu_flags, expected",
    [
        ("fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni", "mixed_bfloat16"),
        ("fpu sse2 avx2 fma amx_bf16 amx_tile", "mixed_bfloat16"),
        ("fpu sse2 avx2 fma avx512f avx512_vnni", "float32"),  # AVX-512 alone has no bfloat16 arithmetic.
        (None, "float32"),  # No /proc/cpuinfo (macOS, Windows).
    ],
)
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


@pytest.fixture
def standin_builds(monkeypatch):
    """Stand-in networks where KerasCV's would be built; returns {network: weight file loaded into it}."""
    builders = {
        "text_encoder": standin_sd.text_encoder,
        "diffusion_model": lambda: standin_sd.diffusion_model(128),
        "decoder": lambda: standin_sd.decoder(128),
    }
    monkeypatch.setattr(weights, "build_network", lambda name, image_size, precision, frozen=False: builders[name]())
    loaded = {}
    monkeypatch.setattr(weights, "_load_keras_cv_file", lambda network, path: loaded.setdefault(network.name, path))
    return loaded


def test_a_local_folder_of_keras_cv_files_loads_each_into_its_network(tmp_path, standin_builds, clip_bpe_path):
    # The networks are stand-ins here (the file format itself: xray/sd/test_networks.py).
    loaded = standin_builds
    for name, _ in KERAS_CV_FILES.values():
        h5py.File(tmp_path / name, "w").close()
    models = load_stable_diffusion(128, "local", str(tmp_path), clip_bpe_path, precision="float32")
    assert loaded == {network: str(tmp_path / name) for network, (name, _) in KERAS_CV_FILES.items()}
    assert models.weight_source == f"local ({tmp_path})" and not models.is_random
    # KerasCV's own files (no conversion.json beside them): KerasCV's schedule and numerics.
    assert (models.numerics, models.schedule.source, models.precision) == ("keras_cv", "keras_cv", "float32")


@pytest.mark.parametrize("chunked", [False, True])
def test_chunked_attention_goes_to_the_unet_alone(tmp_path, standin_builds, clip_bpe_path, monkeypatch, chunked):
    chunked_networks = []
    monkeypatch.setattr(weights, "use_chunked_attention", chunked_networks.append)
    for name, _ in KERAS_CV_FILES.values():
        h5py.File(tmp_path / name, "w").close()
    models = load_stable_diffusion(128, "local", str(tmp_path), clip_bpe_path, chunked_attention=chunked)
    assert chunked_networks == ([models.diffusion_model] if chunked else [])


def test_a_converted_folder_brings_its_tokenizer_schedule_and_numerics(
    tmp_path, standin_builds, clip_bpe_path, monkeypatch
):
    for name, _ in KERAS_CV_FILES.values():
        h5py.File(tmp_path / name, "w").close()
    shutil.copy(clip_bpe_path, tmp_path / TOKENIZER_FILE)
    scheduler = {
        "_class_name": "PNDMScheduler",
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "set_alpha_to_one": False,
    }
    (tmp_path / CONVERSION_FILE).write_text(
        json.dumps({"source": "x", "scheduler": scheduler, "numerics": "diffusers"})
    )
    monkeypatch.setenv("CLIP_BPE_PATH", str(tmp_path / "absent.txt.gz"))  # Would fail if it were read.
    # No --tokenizer_path: the folder's.
    models = load_stable_diffusion(128, "local", str(tmp_path), precision="float32")
    assert (models.numerics, models.schedule.source, models.schedule.steps_offset) == ("diffusers", "PNDMScheduler", 1)
    assert models.tokenizer.encode("x-ray") == load_tokenizer(clip_bpe_path).encode("x-ray")


def test_a_tokenizer_saved_back_reads_the_same(tmp_path, clip_tokenizer):
    from xray.formats.keras_cv_files import save_tokenizer

    save_tokenizer(clip_tokenizer, tmp_path / "bpe.txt.gz")
    again = load_tokenizer(str(tmp_path / "bpe.txt.gz"))
    assert again.encoder == clip_tokenizer.encoder and again.bpe_ranks == clip_tokenizer.bpe_ranks
