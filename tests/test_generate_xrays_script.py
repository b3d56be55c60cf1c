"""The genlab-xray program: bad input gets one line and leaves nothing behind. The program end to end,
with LoRA adapters and the judge, is in test_xray_lora_real.py."""

import pytest

from programs import run_program


def run_script(args, **kwargs):
    return run_program("scripts.generate_xrays", args, **kwargs)


TENSORFLOW = pytest.mark.slow  # Fails once TensorFlow has loaded: seconds, not a moment.


@pytest.mark.parametrize("args, message", [
    pytest.param(["--weights=local", "--weights_path=/nonexistent"], "--weights=local needs --weights_path=DIR", marks=TENSORFLOW),
    (["--prompt_file=/nonexistent.yaml"], "--prompt_file"),
    pytest.param(["--image_size=200"], "--image_size=200 is not a positive multiple of 128", marks=TENSORFLOW),
    (["--num_shards=2", "--shard_index=2"], "--shard_index=2 must be in [0, --num_shards=2)"),
    (["--merge", "--output_dir=/nonexistent"], "point --merge at the shards' dataset folder"),
    (["--real=/nonexistent"], "--real=/nonexistent is not a folder"),
    pytest.param(["--weights=random", "--lora=/nonexistent.safetensors"], "--lora=/nonexistent.safetensors: no such file", marks=TENSORFLOW),
    pytest.param(["--weights=random", "--negative_prompt=" + "very " * 80], "shorten it", marks=TENSORFLOW),
    (["--steps=0"], "--steps must be greater than 0"),
])
def test_bad_input_gets_one_line_and_exit_status(tmp_path, clip_bpe_path, args, message):
    result = run_script([*args, f"--tokenizer_path={clip_bpe_path}"], cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
