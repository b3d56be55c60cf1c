"""The genlab-train-gan program end to end: outputs, flag errors, kill and resume."""

import os

import numpy as np
import pytest

from gan.callbacks import read_history
from gan.sampling import load_generator, sample_digits

from helpers.programs import kill_when, run_program, start_program

TINY = ["--epochs=2", "--batch_size=32", "--noise_dim=16", "--num_train_images=256"]


def run_script(args, **kwargs):
    return run_program("scripts.train_gan", args, **kwargs)


@pytest.mark.slow
def test_writes_every_output(mnist_path, tmp_path):
    out = tmp_path / "run"
    result = run_script([*TINY, "--conditional", f"--output_dir={out}", f"--mnist_path={mnist_path}"])
    assert result.returncode == 0, result.stderr
    for name in (
        "generator.keras",
        "config.json",
        "flags.txt",
        "history.csv",
        "loss_curves.png",
        "discriminator_outputs.png",
        "samples.gif",
        "samples/epoch_0001.png",
        "samples/epoch_0002.png",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert [int(r["epoch"]) for r in read_history(str(out / "history.csv"))] == [1, 2]
    assert "--conditional" in (out / "flags.txt").read_text().split()
    images, labels = sample_digits(load_generator(str(out / "generator.keras")), 10)
    assert images.shape == (10, 28, 28, 1) and labels.tolist() == list(range(10))
    assert str(out) in result.stdout


@pytest.mark.slow
def test_flagfile_repeats_a_run(mnist_path, tmp_path):
    first = tmp_path / "first"
    assert run_script([*TINY, "--epochs=1", f"--output_dir={first}", f"--mnist_path={mnist_path}"]).returncode == 0
    second = tmp_path / "second"
    result = run_script([f"--flagfile={first / 'flags.txt'}", f"--output_dir={second}"])
    assert result.returncode == 0, result.stderr
    a = load_generator(str(first / "generator.keras")).predict(np.ones((2, 16), "float32"), verbose=0)
    b = load_generator(str(second / "generator.keras")).predict(np.ones((2, 16), "float32"), verbose=0)
    np.testing.assert_array_equal(a, b)


def test_bad_flags_get_one_clear_line(tmp_path):
    for flag, words in [
        ("--epochs=0", "--epochs"),
        ("--g_learning_rate=-1", "--g_learning_rate must be greater than 0"),
        ("--beta_1=1.5", "--beta_1 must be in [0, 1)"),
        ("--strategy=cluster", "--strategy"),
    ]:
        result = run_script([flag, f"--output_dir={tmp_path}"])
        assert result.returncode != 0
        assert words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path, tiny_mnist):
    for args, message in [
        ([f"--mnist_path={tmp_path}/missing.npz"], "error: MNIST file"),
        ([f"--mnist_path={tiny_mnist}", "--batch_size=1024"], "--batch_size=1024 is larger than the 512"),
    ]:
        result = run_script([*args, f"--output_dir={tmp_path}/run"])
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "run").exists()  # Checked before anything was created.


@pytest.mark.slow
def test_killed_run_resumes_and_finishes(mnist_path, tmp_path):
    out = tmp_path / "run"
    args = [
        "--epochs=4",
        "--batch_size=32",
        "--noise_dim=16",
        "--num_train_images=1024",
        f"--output_dir={out}",
        f"--mnist_path={mnist_path}",
    ]
    process = start_program("scripts.train_gan", args)
    assert kill_when(process, (out / "checkpoints" / "epoch_0001.weights.h5").exists, timeout=120), (
        "no checkpoint within 120 s"
    )
    assert not (out / "generator.keras").exists()  # Killed before the end.
    # No temporary or partial files are left as outputs.
    assert all(
        not name.endswith(".weights.h5") or name.startswith("epoch_")
        for name in os.listdir(out / "checkpoints")
        if not name.startswith(".")
    )

    result = run_script(args)
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stdout
    assert [int(r["epoch"]) for r in read_history(str(out / "history.csv"))] == [1, 2, 3, 4]
    assert sorted(os.listdir(out / "samples")) == [f"epoch_000{i}.png" for i in range(1, 5)]
    assert (out / "generator.keras").is_file()
