"""The genlab-xray program: killed and rerun it finishes the dataset; bad input gets one line."""

import csv
import os
import signal
import time

import pytest

from programs import run_program, start_program

SMOKE = ["--weights=random", "--image_size=128", "--steps=2", "--batch_size=1"]


def run_script(args, **kwargs):
    return run_program("scripts.generate_xrays", args, **kwargs)


@pytest.mark.slow  # Two processes each build KerasCV's real networks.
def test_killed_run_resumes_to_a_complete_dataset(tmp_path, clip_bpe_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- class: Chest PA\n  prompt: Frontal chest X-ray\n  count: 3\n"
                       "- class: knee\n  prompt: Knee X-ray, lateral view\n  count: 2\n")
    out = tmp_path / "data"
    args = [*SMOKE, f"--prompt_file={prompts}", f"--output_dir={out}", f"--tokenizer_path={clip_bpe_path}"]
    first = start_program("scripts.generate_xrays", args, start_new_session=True)
    deadline = time.time() + 300
    while not list(out.glob("*/*.png")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}
    assert 1 <= len(kept) < 5, "the kill should land mid-job"

    second = run_script(args)
    assert second.returncode == 0, second.stderr
    assert "RANDOM WEIGHTS" in second.stdout
    assert f"Made {5 - len(kept)} images" in second.stdout and f"({len(kept)} were already done)" in second.stdout
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())  # Finished images are kept.
    assert sorted(os.listdir(out)) == ["chest_pa", "knee", "metadata.csv", "sample_grid.png"]
    with open(out / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    files = sorted(str(p.relative_to(out)) for p in out.glob("*/*"))
    assert [row["file_name"] for row in rows] == files == [
        "chest_pa/chest_pa_0000.png", "chest_pa/chest_pa_0001.png", "chest_pa/chest_pa_0002.png",
        "knee/knee_0000.png", "knee/knee_0001.png"]
    assert {row["prompt"] for row in rows} == {"Frontal chest X-ray", "Knee X-ray, lateral view"}


@pytest.mark.parametrize("args, message", [
    (["--weights=local", "--weights_path=/nonexistent"], "--weights=local needs --weights_path=DIR"),
    (["--prompt_file=/nonexistent.yaml"], "--prompt_file"),
    (["--image_size=200"], "--image_size=200 is not a positive multiple of 128"),
    (["--num_shards=2", "--shard_index=2"], "--shard_index=2 must be in [0, --num_shards=2)"),
    (["--merge", "--output_dir=/nonexistent"], "point --merge at the shards' dataset folder"),
    (["--weights=random", "--negative_prompt=" + "very " * 80], "shorten it"),
    (["--steps=0"], "--steps must be greater than 0"),
])
def test_bad_input_gets_one_line_and_exit_status(tmp_path, clip_bpe_path, args, message):
    result = run_script([*args, f"--tokenizer_path={clip_bpe_path}"], cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
