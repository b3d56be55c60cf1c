"""KerasCV's Stable Diffusion back to diffusers: a checkpoint folder anyone with diffusers can load.

    OUT/model_index.json
    OUT/unet/{config.json, diffusion_pytorch_model.safetensors}
    OUT/vae/{config.json, diffusion_pytorch_model.safetensors}     encoder and decoder
    OUT/text_encoder/{config.json, model.safetensors}
    OUT/tokenizer/{vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json}
    OUT/scheduler/scheduler_config.json

`StableDiffusionPipeline.from_pretrained(OUT)` reads it, and it can be pushed to the Hugging
Face Hub as it is. Every tensor is the bridge's mapping run backwards (`xray.formats.diffusers.weight_pairs`),
so a diffusers checkpoint converted to KerasCV and exported again comes back tensor for
tensor. Exported from a diffusers checkpoint, the folder keeps that checkpoint's configs,
tokenizer and scheduler; otherwise it gets Stable Diffusion 1.x's.

Tensors are written one at a time (`xray.formats.safetensors_file`), so exporting holds the networks
and one tensor, not a second copy of the U-Net.
"""

import os
import shutil

import numpy as np

from genlab.files import atomic_path, check_output_path, write_json, write_text
from xray.formats.diffusers import COMPONENTS, open_checkpoint, weight_pairs
from xray.formats.keras_cv_files import merges_text
from xray.formats.lora_file import read_adapters
from xray.formats.safetensors_file import SafetensorsFile, write_safetensors

# Stable Diffusion 1.x's configs, as diffusers and transformers write them (keys left out take
# the libraries' defaults, which are SD 1.x's).
UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
    scaling_factor=0.18215,
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
# SD 1.x's scheduler_config.json (PNDM, "leading" spacing with offset 1).
SCHEDULER_CONFIG = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    steps_offset=1,
)
_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
}
_TOKENIZER_CONFIG = {
    "model_max_length": 77,
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "do_lower_case": True,
    "tokenizer_class": "CLIPTokenizer",
}
TEXT_PREFIX = "text_model."  # transformers 4's CLIPTextModel layout, which most Hub checkpoints have.


def network_tensors(network_name, network, prefix=""):
    """(diffusers name, shape, dtype, function giving the array) for every weight of a network."""
    items = []
    for variable, name, layout in weight_pairs(network_name, network):
        shape = layout.to_diffusers(np.broadcast_to(np.float32(0), tuple(variable.shape))).shape
        items.append(
            (
                prefix + name,
                shape,
                "F32",
                lambda v=variable, to=layout: to.to_diffusers(np.asarray(v, dtype=np.float32)),
            )
        )
    return items


def export_checkpoint(models, image_encoder, out_dir, source_checkpoint=""):
    """Writes `models` (xray.weights.StableDiffusionModels, any weight source) and the VAE's
    `image_encoder` as a diffusers folder; see the module docstring.

    `source_checkpoint`, the diffusers folder the weights came from, lends its configs,
    tokenizer, scheduler and text-encoder naming.
    """
    check_output_path(out_dir, "--output_dir")
    source = open_checkpoint(source_checkpoint) if source_checkpoint else None
    text_prefix, text_extras = TEXT_PREFIX, []
    if source:
        with SafetensorsFile(source.weight_files["text_encoder"]) as handle:
            names = handle.keys()
        text_prefix = TEXT_PREFIX if any(n.startswith(TEXT_PREFIX) for n in names) else ""
        if f"{text_prefix}embeddings.position_ids" in names:  # A buffer transformers 4 saved: kept for the round trip.
            text_extras = [
                (f"{text_prefix}embeddings.position_ids", (1, 77), "I64", lambda: np.arange(77, dtype=np.int64)[None])
            ]
    os.makedirs(out_dir, exist_ok=True)
    files = {
        "unet": network_tensors("diffusion_model", models.diffusion_model),
        "vae": network_tensors("decoder", models.decoder) + network_tensors("image_encoder", image_encoder),
        "text_encoder": network_tensors("text_encoder", models.text_encoder, text_prefix) + text_extras,
    }
    configs = {
        "unet": UNET_CONFIG,
        "vae": VAE_CONFIG,
        "text_encoder": dict(TEXT_CONFIG, architectures=["CLIPTextModel"], model_type="clip_text_model"),
    }
    for folder, items in files.items():
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
        stem = next(stem for sub, stem, _ in COMPONENTS.values() if sub == folder)
        write_safetensors(os.path.join(out_dir, folder, f"{stem}.safetensors"), items)
        config = source.configs[folder] if source else configs[folder]
        write_json(os.path.join(out_dir, folder, "config.json"), config)
    _write_tokenizer(models.tokenizer, os.path.join(out_dir, "tokenizer"), source)
    scheduler = (
        source.read_config("scheduler", "scheduler_config.json")
        if source
        else dict(SCHEDULER_CONFIG, _class_name="PNDMScheduler")
    )
    os.makedirs(os.path.join(out_dir, "scheduler"), exist_ok=True)
    write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), scheduler)
    write_json(
        os.path.join(out_dir, "model_index.json"),
        dict(_MODEL_INDEX, scheduler=["diffusers", scheduler.get("_class_name", "PNDMScheduler")]),
    )
    return out_dir


def _write_tokenizer(tokenizer, folder, source):
    os.makedirs(folder, exist_ok=True)
    if source:
        for name in sorted(os.listdir(os.path.join(source.path, "tokenizer"))):
            shutil.copyfile(os.path.join(source.path, "tokenizer", name), os.path.join(folder, name))
        return
    write_text(os.path.join(folder, "merges.txt"), merges_text(tokenizer))
    write_json(os.path.join(folder, "vocab.json"), tokenizer.encoder)
    write_json(os.path.join(folder, "tokenizer_config.json"), _TOKENIZER_CONFIG)
    write_json(
        os.path.join(folder, "special_tokens_map.json"),
        {key: _TOKENIZER_CONFIG[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")},
    )


def export_lora(lora_path, out_dir):
    """The adapters as diffusers names its LoRA file, `pytorch_lora_weights.safetensors`, so
    `pipe.load_lora_weights(OUT)` finds it. Our adapter files are in that layout already."""
    read_adapters(lora_path)  # A file that is not ours or not PEFT's layout is refused here.
    check_output_path(out_dir, "--output_dir")
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "pytorch_lora_weights.safetensors")
    with atomic_path(target) as tmp:
        shutil.copyfile(lora_path, tmp)
    return target
