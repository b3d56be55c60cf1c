"""LoRA files as diffusers writes them: what reading accepts and what it names as wrong."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from genlab.errors import UserError
from xray.formats.lora_file import read_adapters, write_adapter_file

Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
K = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"


def pair(module, rank, width=8):
    return {
        f"{module}.lora_A.weight": np.ones((rank, width), "float32"),
        f"{module}.lora_B.weight": np.ones((width, rank), "float32"),
    }


def test_a_file_written_is_read_back_with_its_record(tmp_path):
    path = str(tmp_path / "lora.safetensors")
    write_adapter_file(path, {**pair(Q, 4), **pair(K, 4)}, {"rank": 4, "steps": 10})
    adapters, record = read_adapters(path)
    assert sorted(adapters) == [K, Q] and adapters[Q][0].shape == (4, 8) and adapters[Q][1].shape == (8, 4)
    assert record["steps"] == 10 and record["architecture"] == "stable-diffusion-1.x"


def test_a_diffusers_file_without_a_record_is_read(tmp_path):
    path = str(tmp_path / "diffusers.safetensors")
    save_file(pair(Q, 2), path)
    adapters, record = read_adapters(path)
    assert list(adapters) == [Q] and record == {}


@pytest.mark.parametrize(
    "tensors, record, message",
    [
        ({**pair(Q, 4), **pair(K, 8)}, None, r"expected adapters of one rank \(its record says None\), found \[4, 8\]"),
        (pair(Q, 4), {"rank": 8}, r"expected adapters of one rank \(its record says 8\), found \[4\]"),
        ({}, None, r"expected adapters of one rank"),
        ({f"{Q}.weight": np.ones((8, 8), "float32")}, None, "is not a PEFT LoRA weight"),
    ],
)
def test_files_that_are_not_one_rank_of_peft_adapters_are_named(tmp_path, tensors, record, message):
    path = str(tmp_path / "bad.safetensors")
    if record is None:
        save_file(tensors, path)
    else:
        write_adapter_file(path, tensors, record)
    with pytest.raises(UserError, match=message):
        read_adapters(path, "--lora")


def test_a_missing_or_foreign_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_adapters(str(tmp_path / "absent.safetensors"))
    (tmp_path / "text.safetensors").write_text("not a safetensors file")
    with pytest.raises(UserError, match="is not a readable safetensors file"):
        read_adapters(str(tmp_path / "text.safetensors"))
