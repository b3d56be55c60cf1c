"""The X-ray lab's loop end to end, as a user runs it: adapt Stable Diffusion to a folder of images
(genlab-xray-finetune, on KerasCV's real networks with random weights) and merge the adapters into
weight files (--merge), generate from those files with further adapters on top (genlab-xray
--weights=local --lora), and judge the result against real images (--real). In a module of its
own: the programs' memory adds to whatever this process still holds.

The adaptation also resumes from its first resume point, as after a kill there: it must end where
the uninterrupted run did (a kill mid-run is tests/xray/training/test_finetune's, on stand-ins)."""

import json
import os
import shutil

import numpy as np
import pytest

from genlab.files import read_csv, write_csv
from xray.formats.keras_cv_files import IMAGE_ENCODER_FILE, KERAS_CV_FILES, TOKENIZER_FILE
from xray.formats.lora_file import merge_adapters, read_adapters
from xray.training.checkpoints import step_files

from helpers.image_folders import make_noise_folder, make_shapes_folder
from helpers.numerics import array_digest, fingerprint
from helpers.programs import run_program

# Trains KerasCV's real U-Net, then builds the networks again to generate.
pytestmark = pytest.mark.slow


def finetune_args(data, out, clip_bpe_path, precision="float32"):
    # float32 unless a test asks: the same on every CPU, and with or without --merge the same
    # random weights (under a mixed precision, a run without --merge stores them in bfloat16 and
    # draws other ones).
    return [
        f"--data_dir={data}",
        f"--output_dir={out}",
        "--weights=random",
        f"--tokenizer_path={clip_bpe_path}",
        "--image_size=128",
        "--max_steps=8",
        "--checkpoint_every=4",
        "--sample_steps=2",
        "--warmup_steps=0",
        "--learning_rate=5e-3",
        "--caption_dropout=0",
        f"--precision={precision}",
    ]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, clip_bpe_path):
    """Images in two class folders, and a run of genlab-xray-finetune on them with --merge, which
    keeps both its resume points."""
    root = tmp_path_factory.mktemp("adapt")
    data = make_shapes_folder(root / "xrays", per_class=2, size=128, classes=("chest_pa", "knee"))
    args = finetune_args(data, root / "adapted", clip_bpe_path)
    result = run_program(
        "scripts.finetune_xrays", args + ["--sample_every=8", "--merge", "--checkpoints_total_limit=2"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return data, root / "adapted"


def test_an_adaptation_resumes_from_its_first_resume_point_to_where_it_ended(tmp_path, adapted, clip_bpe_path):
    """The run's folder as a kill just after the step-4 checkpoint leaves it (the stand-in test
    kills one there), then the same command again."""
    data, whole = adapted
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed, ignore=shutil.ignore_patterns("merged"))
    assert [step for step, _ in step_files(resumed / "checkpoints", "npz")] == [4, 8]  # --checkpoints_total_limit=2
    for later in ("checkpoints/step_000008.npz", "samples/step_000008.png", "lora.safetensors"):
        (resumed / later).unlink()
    for name in ("history.csv", "probe_loss.csv"):
        write_csv(resumed / name, [row for row in read_csv(whole / name) if int(row["step"]) <= 4])
    args = finetune_args(data, resumed, clip_bpe_path) + ["--sample_every=0"]  # Samples draw on no training randomness.
    result = run_program("scripts.finetune_xrays", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout and "4 of 8 updates done" in result.stdout
    assert [step for step, _ in step_files(resumed / "checkpoints", "npz")] == [8]  # The default keeps one.
    got, record = read_adapters(str(resumed / "lora.safetensors"))
    expected, _ = read_adapters(str(whole / "lora.safetensors"))
    assert record["steps"] == 8 and sorted(got) == sorted(expected)
    for module, pair in expected.items():
        for a, b in zip(got[module], pair):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=module)
    for name, column in (("probe_loss.csv", "probe_loss"), ("history.csv", "loss")):
        losses = [[float(row[column]) for row in read_csv(run / name)] for run in (resumed, whole)]
        assert len(losses[0]) == len(losses[1]) > 2, name
        np.testing.assert_allclose(*losses, rtol=1e-5, err_msg=name)


def test_adapters_train_on_frozen_weights_kept_in_bfloat16(tmp_path, adapted, clip_bpe_path):
    """Without --merge, a mixed precision stores the frozen weights in bfloat16 (xray/training/test_adapters:
    computing what the float32 weights do). The whole loop runs on them: latents cached by the VAE
    encoder, captions encoded, float32 adapters trained, sample rows drawn."""
    data, _ = adapted
    out = tmp_path / "bf16"
    args = finetune_args(data, out, clip_bpe_path, precision="mixed_bfloat16")
    result = run_program("scripts.finetune_xrays", args + ["--max_steps=4", "--sample_every=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    adapters, record = read_adapters(str(out / "lora.safetensors"))
    assert len(adapters) == 16 * 2 * 4 and record["steps"] == 4
    assert all(np.abs(b).max() > 0 for _, b in adapters.values())  # B starts at zero: every adapter trained.
    assert np.isfinite([float(row["probe_loss"]) for row in read_csv(out / "probe_loss.csv")]).all()
    assert sorted(os.listdir(out / "samples")) == ["step_000000.png", "step_000004.png"]


def test_adapt_generate_judge(tmp_path, adapted):
    _, adapted = adapted
    probe = [float(row["probe_loss"]) for row in read_csv(adapted / "probe_loss.csv")]
    assert len(probe) == 3 and probe[-1] < 0.85 * probe[0], probe  # Learning, on fixed batches.
    adapters, record = read_adapters(str(adapted / "lora.safetensors"))
    assert len(adapters) == 16 * 2 * 4  # q, k, v, out of both attentions in the U-Net's 16 transformer blocks.
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in adapters and record["steps"] == 8
    with np.load(adapted / "checkpoints" / "step_000008.npz") as checkpoint:  # What the optimizer could change:
        trainable = [checkpoint[k].shape for k in checkpoint.files if k.startswith("trainable_")]
    assert len(trainable) == 2 * len(adapters) and all(4 in shape for shape in trainable)  # the adapters, nothing else.
    assert sorted(os.listdir(adapted / "samples")) == ["step_000000.png", "step_000008.png"]
    merged = adapted / "merged"
    assert sorted(os.listdir(merged)) == sorted(
        [f for f, _ in KERAS_CV_FILES.values()] + [IMAGE_ENCODER_FILE[0], TOKENIZER_FILE]
    )

    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(
        "- class: Chest PA\n  prompt: X-ray radiograph, chest pa\n  count: 2\n"
        "- class: knee\n  prompt: X-ray radiograph, knee\n  count: 2\n"
    )
    out = tmp_path / "data"
    real = make_noise_folder(tmp_path / "real", per_class=3, classes=("chest_pa", "knee"))
    # The cache's extra weight copy is scripts/test_generate_xrays's.
    result = run_program(
        "scripts.generate_xrays",
        [
            "--image_size=128",
            "--steps=2",
            "--batch_size=2",
            f"--prompt_file={prompts}",
            f"--output_dir={out}",
            "--weights=local",
            f"--weights_path={merged}",
            f"--lora={adapted / 'lora.safetensors'}:0.8",
            f"--real={real}",
            "--nocpu_weight_cache",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Made 4 images" in result.stdout
    assert sorted(os.listdir(out)) == ["chest_pa", "knee", "metadata.csv", "sample_grid.png"]
    rows = read_csv(out / "metadata.csv")
    files = sorted(str(p.relative_to(out)) for p in out.glob("*/*"))
    assert (
        [row["file_name"] for row in rows]
        == files
        == ["chest_pa/chest_pa_0000.png", "chest_pa/chest_pa_0001.png", "knee/knee_0000.png", "knee/knee_0001.png"]
    )
    assert all(
        row["weight_source"].startswith(f"local ({merged})")
        and "LoRA lora.safetensors (sha256 " in row["weight_source"]
        and row["weight_source"].endswith("x 0.8")
        for row in rows
    )
    judged = json.loads((tmp_path / "data_judge" / "summary.json").read_text())
    assert judged["synthetic"]["count"] == 4 and judged["classes"] == ["chest_pa", "knee"]
    assert "FID real floor" in result.stdout
    assert_merged_files_hold_base_plus_adapters(merged, adapted / "lora.safetensors")  # Last: no program beside it.


def assert_merged_files_hold_base_plus_adapters(merged, lora_file):
    """The merged U-Net file holds the program's random base (the same seed builds it again) with
    the adapters added, bit for bit; the text encoder's, which had none, holds the base."""
    import keras

    from xray.sd.networks import build_network

    keras.utils.set_random_seed(0)  # The program's --seed; it builds the text encoder first, then the U-Net.
    base = {name: build_network(name, 128, "float32") for name in ("text_encoder", "diffusion_model")}
    unmerged = fingerprint(base["diffusion_model"])
    merge_adapters(base, str(lora_file))
    for name, network in base.items():
        expected = fingerprint(network)
        if name == "diffusion_model":
            assert sum(a != b for a, b in zip(unmerged, expected)) == 16 * 2 * 4  # The adapted kernels moved.
        assert file_digests(merged / KERAS_CV_FILES[name][0]) == sorted(expected), name


def file_digests(path):
    """The sha256 of every array in an HDF5 weight file, sorted, read one array at a time: loading
    the file into a network would hold a second copy of it."""
    import h5py

    digests = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, item: digests.append(array_digest(item[()])) if isinstance(item, h5py.Dataset) else None)
    return sorted(digests)
