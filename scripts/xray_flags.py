"""Flags the X-ray programs share: where Stable Diffusion's weights come from, and its precision."""

import os

from absl import flags

from genlab.errors import UserError
from xray.config import PRECISIONS, TOKENIZER_ENV_VAR, WEIGHT_SOURCES


def define_source_flags():
    flags.DEFINE_enum(
        "weights",
        "keras_cv",
        WEIGHT_SOURCES,
        "Weight source: KerasCV's download, a local folder, a diffusers checkpoint, or random (smoke tests).",
    )
    flags.DEFINE_string("weights_path", "", "The folder for --weights=local or --weights=diffusers.")
    flags.DEFINE_string(
        "tokenizer_path",
        os.environ.get(TOKENIZER_ENV_VAR, ""),
        f"CLIP's bpe_simple_vocab_16e6.txt.gz (default: ${TOKENIZER_ENV_VAR}, else KerasCV's download).",
    )


def define_weight_flags(default_image_size=512):
    """The weight source, the compute precision and the image size."""
    define_source_flags()
    flags.DEFINE_enum(
        "precision",
        "auto",
        PRECISIONS,
        "Compute precision. auto: mixed_bfloat16 on CPUs with bfloat16 instructions (AVX-512 BF16, AMX), where it is "
        "faster, else float32.",
    )
    flags.DEFINE_integer(
        "image_size",
        default_image_size,
        "Image height and width in pixels, a multiple of 128 (Stable Diffusion 1.x was trained at 512).",
    )


def parse_lora(value):
    """`FILE` or `FILE:SCALE` (a --lora flag's value) -> (FILE, SCALE)."""
    path, _, scale = value.rpartition(":")
    if not path or os.path.exists(value):
        return value, 1.0  # No scale, or a colon inside the file's own name.
    try:
        return path, float(scale)
    except ValueError:
        if os.path.exists(path):
            raise UserError(
                f"--lora={value}: the scale {scale!r} is not a number; write FILE:SCALE, for example {path}:0.8"
            ) from None
        return value, 1.0  # Neither a file nor FILE:SCALE: the loader names the missing file.
