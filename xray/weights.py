"""Where Stable Diffusion's weights come from, and building KerasCV's networks with them.

Four sources, chosen by the X-ray script's `--weights`:
  keras_cv   KerasCV's own v1.4 files, downloaded once from Hugging Face into Keras's cache;
  local      a folder holding those files (or files our diffusers bridge wrote), offline;
  diffusers  a Hugging Face diffusers checkpoint folder, converted on load by `xray.formats.diffusers`;
  random     untrained weights: smoke tests and timing only, the images are noise.
Every network is built with `download_weights=False` and loaded here, so nothing is
fetched that the chosen source does not name, and a missing file stops the run before
any network is built.
"""

import dataclasses
import os

import h5py
import keras
import tensorflow as tf

# KerasCV exports none of Stable Diffusion's layers: keras_cv.src, held by setup.py's keras-cv==0.9.0 pin
# (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.clip_tokenizer import SimpleTokenizer

from genlab.errors import UserError
from xray.config import PRECISIONS, TOKENIZER_ENV_VAR, WEIGHT_SOURCES
from xray.formats.diffusers import open_checkpoint, use_diffusers_numerics
from xray.formats.keras_cv_files import (
    IMAGE_ENCODER_FILE,
    KERAS_CV_FILES,
    TOKENIZER_FILE,
    load_keras_cv_weights,
    read_conversion,
)
from xray.formats.lora_file import describe as describe_lora
from xray.formats.lora_file import merge_adapters, read_adapters
from xray.sd.attention import use_chunked_attention
from xray.sd.networks import IMAGE_ENCODER, NETWORKS, build_network
from xray.sd.sampler import NoiseSchedule, tokenize

# KerasCV 0.9.0's download addresses (its constructors hold them inline).
_HF = "https://huggingface.co/fchollet/stable-diffusion/resolve/main/"
CLIP_BPE_URL = f"https://github.com/openai/CLIP/blob/main/clip/{TOKENIZER_FILE}?raw=true"
CLIP_BPE_HASH = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

_OFFLINE_HELP = (
    "on a machine without internet pass --weights=local --weights_path=DIR (a folder with "
    + ", ".join(name for name, _ in KERAS_CV_FILES.values())
    + "), --weights=diffusers --weights_path=CHECKPOINT, or --weights=random for a smoke test"
)


@dataclasses.dataclass
class StableDiffusionModels:
    """KerasCV's three networks and tokenizer with loaded weights, ready to sample."""

    tokenizer: object
    text_encoder: keras.Model
    diffusion_model: keras.Model
    decoder: keras.Model
    weight_source: str  # What the metadata records, e.g. "keras_cv (Stable Diffusion v1.4)".
    schedule: NoiseSchedule
    image_size: int
    precision: str
    numerics: str  # "keras_cv" (tanh GELU, eps 1e-5) or "diffusers" (a converted checkpoint's own).

    @property
    def is_random(self):
        return self.weight_source.startswith("random")


def load_stable_diffusion(
    image_size,
    weights="keras_cv",
    weights_path="",
    tokenizer_path="",
    precision="auto",
    jit_compile=False,
    check_texts=(),
    loras=(),
    frozen=False,
    chunked_attention=False,
):
    """Builds KerasCV's Stable Diffusion v1 networks at `image_size` pixels with weights from `weights`.

    `loras` are (LoRA file, scale) pairs, merged into the weights once loaded. Files are found
    (or downloaded), LoRA files read and `check_texts` tokenized first, so a bad source or an
    over-long prompt fails in seconds, before the networks are built. `frozen`: no network's
    own weights will train (`xray.sd.networks.build_network`). `chunked_attention`: the U-Net
    computes attention in query chunks (`xray.sd.attention.use_chunked_attention`), for generation.
    """
    if image_size <= 0 or image_size % 128:
        raise UserError(
            f"--image_size={image_size} is not a positive multiple of 128 (the U-Net halves it 3 times, the VAE 3 "
            "times more); try 256 or 512"
        )
    if precision not in PRECISIONS:
        raise UserError(f"--precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    precision = resolve_precision(precision)
    if weights == "diffusers":
        checkpoint, files = open_checkpoint(weights_path), None
        tokenizer = checkpoint.tokenizer()
        schedule = checkpoint.noise_schedule()
        weight_source = f"diffusers ({os.path.abspath(weights_path)})"
        numerics = "diffusers"
    else:
        files = find_weight_files(weights, weights_path)
        conversion = read_conversion(weights_path) if weights == "local" else None
        if conversion and not tokenizer_path and os.path.isfile(os.path.join(weights_path, TOKENIZER_FILE)):
            tokenizer_path = os.path.join(weights_path, TOKENIZER_FILE)
        tokenizer = load_tokenizer(tokenizer_path)
        schedule = (
            NoiseSchedule.from_diffusers_config(conversion["scheduler"], weights_path)
            if conversion
            else NoiseSchedule.keras_cv()
        )
        numerics = conversion["numerics"] if conversion else "keras_cv"
        weight_source = {
            "keras_cv": "keras_cv (Stable Diffusion v1.4, KerasCV download)",
            "local": f"local ({os.path.abspath(weights_path or '.')})",
            "random": "random (UNTRAINED weights: noise, not X-rays)",
        }[weights]

    for text in check_texts:
        tokenize(tokenizer, text)
    for path, scale in loras:
        read_adapters(path)
        weight_source += " + " + describe_lora(path, scale)
    networks = {}
    for name in NETWORKS:  # Built and loaded one by one, so a wrong first file fails fast.
        network = networks[name] = build_network(name, image_size, precision, frozen=frozen)
        if weights == "diffusers":
            checkpoint.load_weights(name, network)
        elif files:
            _load_keras_cv_file(network, files[name])
        if numerics == "diffusers":
            use_diffusers_numerics(name, network)
    for path, scale in loras:
        merge_adapters(networks, path, scale)
    if chunked_attention:
        use_chunked_attention(networks["diffusion_model"])
    for network in networks.values():
        network.compile(jit_compile=jit_compile)
    return StableDiffusionModels(
        tokenizer, *networks.values(), weight_source, schedule, image_size, precision, numerics
    )


def load_image_encoder(weights="keras_cv", weights_path="", precision="float32", frozen=False):
    """KerasCV's VAE encoder (images to latents, for fine-tuning) from the same four sources."""
    network = build_network(IMAGE_ENCODER, image_size=None, precision=resolve_precision(precision), frozen=frozen)
    name, file_hash = IMAGE_ENCODER_FILE
    if weights == "diffusers":
        open_checkpoint(weights_path).load_weights(IMAGE_ENCODER, network)
        use_diffusers_numerics(IMAGE_ENCODER, network)
    elif weights == "keras_cv":
        _load_keras_cv_file(network, _download(_HF + name, name, file_hash))
    elif weights == "local":
        path = os.path.join(weights_path, name)
        if not os.path.isfile(path):
            raise UserError(
                f"--weights_path={weights_path!r} lacks {name}, the VAE encoder fine-tuning needs; copy KerasCV's "
                "file there, or convert a diffusers checkpoint again with genlab-convert-diffusers"
            )
        _load_keras_cv_file(network, path)
        if (read_conversion(weights_path) or {}).get("numerics") == "diffusers":
            use_diffusers_numerics(IMAGE_ENCODER, network)
    elif weights != "random":
        raise UserError(f"--weights={weights!r} is not one of {', '.join(WEIGHT_SOURCES)}")
    return network


def resolve_precision(precision, cpuinfo_path="/proc/cpuinfo"):
    """`auto` -> mixed_bfloat16 on a machine without GPUs whose CPU has bfloat16 instructions
    (AVX-512 BF16 or AMX), float32 elsewhere; other names unchanged.

    Where the CPU multiplies bfloat16 natively, halving the bytes per multiply shortens the
    step at a small cost in accuracy (docs/benchmarks.md has both); without the instructions
    bfloat16 has no hardware to run fast on. GPUs keep float32 unless asked: mixed_float16
    needs a GPU with tensor cores to pay off.
    """
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "float32"
    try:
        with open(cpuinfo_path) as f:
            cpu_flags = set(f.read().split())
    except OSError:  # Not Linux: no cheap way to ask the CPU.
        return "float32"
    return "mixed_bfloat16" if cpu_flags & {"avx512_bf16", "amx_bf16"} else "float32"


def find_weight_files(weights, weights_path):
    """{network name: weight file} for a source (None for random)."""
    if weights == "random":
        return None
    if weights == "keras_cv":
        return {
            network: _download(_HF + name, name, file_hash) for network, (name, file_hash) in KERAS_CV_FILES.items()
        }
    if weights == "local":
        if not weights_path or not os.path.isdir(weights_path):
            raise UserError(
                "--weights=local needs --weights_path=DIR, a folder with "
                f"{', '.join(n for n, _ in KERAS_CV_FILES.values())}; {weights_path!r} is not a folder"
            )
        paths = {network: os.path.join(weights_path, name) for network, (name, _) in KERAS_CV_FILES.items()}
        missing = [os.path.basename(p) for p in paths.values() if not os.path.isfile(p)]
        if missing:
            raise UserError(
                f"--weights_path={weights_path!r} lacks {', '.join(missing)}; copy KerasCV's files there, or write "
                "them from a diffusers checkpoint with genlab-convert-diffusers"
            )
        not_hdf5 = [os.path.basename(p) for p in paths.values() if not h5py.is_hdf5(p)]
        if not_hdf5:
            raise UserError(
                f"--weights_path={weights_path!r}: {', '.join(not_hdf5)} is not an HDF5 weight file; replace it with "
                "KerasCV's file"
            )
        return paths
    raise UserError(f"--weights={weights!r} is not one of {', '.join(WEIGHT_SOURCES)}")


def load_tokenizer(tokenizer_path=""):
    """CLIP's BPE tokenizer: from `tokenizer_path`, `$CLIP_BPE_PATH`, else KerasCV's download."""
    path = tokenizer_path or os.environ.get(TOKENIZER_ENV_VAR, "")
    if path and not os.path.isfile(path):
        raise UserError(
            f"CLIP BPE file {path!r} does not exist; pass --tokenizer_path={TOKENIZER_FILE} or set {TOKENIZER_ENV_VAR}"
        )
    if not path:
        path = _download(
            CLIP_BPE_URL,
            TOKENIZER_FILE,
            CLIP_BPE_HASH,
            help=f"pass --tokenizer_path={TOKENIZER_FILE} or set {TOKENIZER_ENV_VAR} on a machine without internet",
        )
    try:
        return SimpleTokenizer(path)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(
            f"CLIP BPE file {path!r} is not the gzipped merges file ({error}); use {TOKENIZER_FILE}"
        ) from None


def _load_keras_cv_file(network, path):
    try:
        load_keras_cv_weights(network, path)
    except Exception as error:  # h5py and Keras raise many types for a foreign or truncated file.
        raise UserError(
            f"weight file {path!r} does not fit KerasCV's {network.name} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); is it the right file?"
        ) from None


def _download(url, name, file_hash, help=_OFFLINE_HELP):
    try:
        return keras.utils.get_file(name, url, file_hash=file_hash)
    except Exception as error:  # urllib raises URLError, HTTPError, socket errors, ValueError for a bad hash.
        raise UserError(
            f"could not download {name} ({type(error).__name__}: {str(error).splitlines()[0][:120]}); {help}"
        ) from None
