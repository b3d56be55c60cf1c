"""genlab-export-diffusers without networks: the adapters alone, and bad input. The full
checkpoint export is proven against diffusers in xray/formats/test_diffusers_parity.py."""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from helpers.programs import run_program


@pytest.mark.slow  # A program run that loads TensorFlow.
def test_lora_only_writes_diffusers_file_name(tmp_path):
    lora = tmp_path / "lora.safetensors"
    tensors = {
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": np.ones((4, 1280), np.float32),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": np.ones((1280, 4), np.float32),
    }
    save_file(tensors, lora)
    out = tmp_path / "export"
    result = run_program("scripts.export_diffusers", [f"--lora={lora}:0.5", "--lora_only", f"--output_dir={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    written = load_file(out / "pytorch_lora_weights.safetensors")
    assert sorted(written) == sorted(tensors) and all(np.array_equal(written[k], tensors[k]) for k in tensors)


@pytest.mark.slow  # A program run that loads TensorFlow.
def test_a_file_that_is_not_a_lora_is_refused_and_nothing_is_written(tmp_path):
    other = tmp_path / "model.safetensors"
    save_file({"conv_in.weight": np.ones((320, 4, 3, 3), np.float32)}, other)
    out = tmp_path / "export"
    result = run_program("scripts.export_diffusers", [f"--lora={other}", "--lora_only", f"--output_dir={out}"])
    assert result.returncode == 2 and "'conv_in.weight' is not a PEFT LoRA weight" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("module", ["scripts.export_diffusers", "scripts.generate_xrays"])
def test_a_scale_that_is_not_a_number_is_named(tmp_path, module):
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"")  # Exists: the scale, not the file, is what is wrong.
    out = tmp_path / "out"
    result = run_program(module, [f"--lora={lora}:abc", f"--output_dir={out}"])
    assert result.returncode == 2 and f"--lora={lora}:abc: the scale 'abc' is not a number" in result.stderr
    assert "no such file" not in result.stderr and "Traceback" not in result.stderr and not out.exists()


def test_a_colon_in_a_file_name_is_not_read_as_a_scale(tmp_path):
    from scripts.xray_flags import parse_lora

    named = tmp_path / "run:2.safetensors"
    named.write_bytes(b"")
    assert parse_lora(str(named)) == (str(named), 1.0)
    assert parse_lora(f"{named}:0.5") == (str(named), 0.5)
    assert parse_lora("missing.safetensors:abc") == ("missing.safetensors:abc", 1.0)  # Named missing by the loader.
