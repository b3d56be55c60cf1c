"""The genlab-xray program: a dataset end to end; bad input gets one line and leaves nothing behind."""

import csv
import json
import os

import pytest

from image_folders import make_noise_folder
from programs import run_program

SMOKE = ["--weights=random", "--image_size=128", "--steps=2", "--batch_size=1"]


def run_script(args, **kwargs):
    return run_program("scripts.generate_xrays", args, **kwargs)


@pytest.mark.slow  # Builds KerasCV's real networks (random weights).
def test_makes_a_dataset_end_to_end(tmp_path, clip_bpe_path):
    # Resuming after a kill is tested on stand-in networks (test_xray_generate.py), where it is cheap.
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- class: Chest PA\n  prompt: Frontal chest X-ray\n  count: 2\n"
                       "- class: knee\n  prompt: Knee X-ray, lateral view\n  count: 2\n")
    out = tmp_path / "data"
    real = make_noise_folder(tmp_path / "real", per_class=3, classes=("chest_pa", "knee"))  # Judged against, as --real.
    result = run_script([*SMOKE, "--batch_size=2", f"--prompt_file={prompts}", f"--output_dir={out}",
                         f"--tokenizer_path={clip_bpe_path}", f"--real={real}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM WEIGHTS" in result.stdout and "Made 4 images" in result.stdout
    assert sorted(os.listdir(out)) == ["chest_pa", "knee", "metadata.csv", "sample_grid.png"]
    with open(out / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    files = sorted(str(p.relative_to(out)) for p in out.glob("*/*"))
    assert [row["file_name"] for row in rows] == files == [
        "chest_pa/chest_pa_0000.png", "chest_pa/chest_pa_0001.png", "knee/knee_0000.png", "knee/knee_0001.png"]
    assert {row["prompt"] for row in rows} == {"Frontal chest X-ray", "Knee X-ray, lateral view"}
    assert all(row["weight_source"].startswith("random (UNTRAINED") for row in rows)
    judged = json.loads((tmp_path / "data_judge" / "summary.json").read_text())
    assert judged["synthetic"]["count"] == 4 and judged["classes"] == ["chest_pa", "knee"]
    assert "FID real floor" in result.stdout


TENSORFLOW = pytest.mark.slow  # Fails once TensorFlow has loaded: seconds, not a moment.


@pytest.mark.parametrize("args, message", [
    pytest.param(["--weights=local", "--weights_path=/nonexistent"], "--weights=local needs --weights_path=DIR", marks=TENSORFLOW),
    (["--prompt_file=/nonexistent.yaml"], "--prompt_file"),
    pytest.param(["--image_size=200"], "--image_size=200 is not a positive multiple of 128", marks=TENSORFLOW),
    (["--num_shards=2", "--shard_index=2"], "--shard_index=2 must be in [0, --num_shards=2)"),
    (["--merge", "--output_dir=/nonexistent"], "point --merge at the shards' dataset folder"),
    (["--real=/nonexistent"], "--real=/nonexistent is not a folder"),
    pytest.param(["--weights=random", "--negative_prompt=" + "very " * 80], "shorten it", marks=TENSORFLOW),
    (["--steps=0"], "--steps must be greater than 0"),
])
def test_bad_input_gets_one_line_and_exit_status(tmp_path, clip_bpe_path, args, message):
    result = run_script([*args, f"--tokenizer_path={clip_bpe_path}"], cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
