"""The X-ray generator's settings and choices: plain data, no TensorFlow, so the program can
define its flags from them at once."""

import dataclasses

from xray.prompts import DEFAULT_NEGATIVE_PROMPT

WEIGHT_SOURCES = ("keras_cv", "local", "diffusers", "random")  # See xray.weights.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TOKENIZER_ENV_VAR = "CLIP_BPE_PATH"


@dataclasses.dataclass
class XrayConfig:
    images_per_prompt: int = 8  # A class's `count` in the prompt file wins.
    batch_size: int = 2  # Images per U-Net call (twice that with guidance).
    steps: int = 25
    guidance_scale: float = 7.5
    seed: int = 0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    num_shards: int = 1
    shard_index: int = 0
    grid_images_per_class: int = 4
