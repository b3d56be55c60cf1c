"""genlab-export-diffusers without networks: the adapters alone, and bad input. The full
checkpoint export is proven against diffusers in test_bridge_parity.py."""

import numpy as np
from safetensors.numpy import load_file, save_file

from programs import run_program


def test_lora_only_writes_diffusers_file_name(tmp_path):
    lora = tmp_path / "lora.safetensors"
    tensors = {"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": np.ones((4, 1280), np.float32),
               "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": np.ones((1280, 4), np.float32)}
    save_file(tensors, lora)
    out = tmp_path / "export"
    result = run_program("scripts.export_diffusers", [f"--lora={lora}:0.5", "--lora_only", f"--output_dir={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    written = load_file(out / "pytorch_lora_weights.safetensors")
    assert sorted(written) == sorted(tensors) and all(np.array_equal(written[k], tensors[k]) for k in tensors)


def test_a_file_that_is_not_a_lora_is_refused_and_nothing_is_written(tmp_path):
    other = tmp_path / "model.safetensors"
    save_file({"conv_in.weight": np.ones((320, 4, 3, 3), np.float32)}, other)
    out = tmp_path / "export"
    result = run_program("scripts.export_diffusers", [f"--lora={other}", "--lora_only", f"--output_dir={out}"])
    assert result.returncode == 2 and "'conv_in.weight' is not a PEFT LoRA weight" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
