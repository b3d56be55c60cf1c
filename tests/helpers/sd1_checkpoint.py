"""Diffusers Stable Diffusion 1.x checkpoint folders for tests.

`write_checkpoint` (needs torch, diffusers, transformers) saves diffusers' and transformers'
own networks with SD 1.x's configuration and random weights, as
`StableDiffusionPipeline.save_pretrained` lays them out, one network at a time. `write_configs`
writes the config files alone, for the checks that run before any tensor is read.
"""

import gzip
import json

from keras_cv.src.models.stable_diffusion.clip_tokenizer import SimpleTokenizer

# SD 1.x's, as exports write them.
from xray.formats.export import (
    SCHEDULER_CONFIG,
    TEXT_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
)


def build_network(name, seed=0):
    """diffusers' U-Net or VAE, or transformers' CLIP text model ("unet", "vae", "text_encoder"),
    SD 1.x-shaped, random weights.

    Every parameter is perturbed, so norms and biases are not left at 1 and 0 where a
    wrongly mapped tensor would go unnoticed.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    network = {
        "unet": lambda: UNet2DConditionModel(**UNET_CONFIG),
        "vae": lambda: AutoencoderKL(**VAE_CONFIG),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)),
    }[name]()
    network.eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return network


def write_tokenizer(folder, bpe_path):
    """vocab.json and merges.txt, as CLIP's tokenizer folder holds them, from the BPE merges file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # The merges CLIP uses (KerasCV's slice).
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(SimpleTokenizer(bpe_path).encoder), encoding="utf-8")


def write_configs(folder, bpe_path, unet=None, vae=None, text_encoder=None):
    """The config files (and tokenizer) of an SD 1.x folder, with any keys overridden."""
    configs = {
        "unet": dict(UNET_CONFIG, **(unet or {})),
        "vae": dict(VAE_CONFIG, **(vae or {})),
        "text_encoder": dict(TEXT_CONFIG, **(text_encoder or {})),
    }
    for name, config in configs.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(config))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(dict(SCHEDULER_CONFIG, _class_name="PNDMScheduler"))
    )
    write_tokenizer(folder / "tokenizer", bpe_path)


def write_checkpoint(folder, bpe_path, use_network=lambda name, network: None):
    """A diffusers SD 1.x folder under `folder`. Each network is built, saved, handed to
    `use_network(name, network)` (to compute reference outputs) and freed before the next is
    built; returns {name: what use_network returned}."""
    import gc

    from diffusers import PNDMScheduler

    write_tokenizer(folder / "tokenizer", bpe_path)
    results = {}
    for name in ("text_encoder", "vae", "unet"):
        network = build_network(name)
        network.save_pretrained(folder / name, safe_serialization=True)
        results[name] = use_network(name, network)
        del network
        gc.collect()
    PNDMScheduler(**SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return results
