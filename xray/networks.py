"""KerasCV's Stable Diffusion v1 networks, built untrained: the one place they are constructed.

Every network is built with `download_weights=False`; `xray.weights` decides where weights
come from, and nothing is fetched here.
"""

import keras
from keras_cv.src.models.stable_diffusion.decoder import Decoder
from keras_cv.src.models.stable_diffusion.diffusion_model import DiffusionModel
from keras_cv.src.models.stable_diffusion.image_encoder import ImageEncoder
from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoder

NETWORKS = ("text_encoder", "diffusion_model", "decoder")  # What generation runs.
IMAGE_ENCODER = "image_encoder"  # The VAE's encoder: images to latents, for fine-tuning.
MAX_PROMPT_TOKENS = 77  # CLIP's context: a start token, 75 prompt tokens and an end token.


def build_network(name, image_size, precision, frozen=False):
    """One of KerasCV's networks (NETWORKS or IMAGE_ENCODER), untrained, with layers in `precision`.

    `frozen`: the network's own weights will not train (it runs forward, or trains adapters,
    which `xray.lora.add_adapters` keeps in float32). Under a mixed policy its weights are then
    stored in the compute dtype, as diffusers' training scripts store frozen weights: half the
    memory, and nothing kept for the backward pass but the weights themselves, where a mixed
    policy keeps a half-precision copy of each. It computes exactly what the mixed policy
    computes from the same weights, which it holds rounded to the compute dtype.
    """
    if frozen:
        precision = keras.dtype_policies.get(precision).compute_dtype
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # Layers take the policy when they are built.
    try:
        if name == "text_encoder":
            return TextEncoder(MAX_PROMPT_TOKENS, download_weights=False)
        if name == "diffusion_model":
            return DiffusionModel(image_size, image_size, MAX_PROMPT_TOKENS, download_weights=False)
        if name == IMAGE_ENCODER:
            return ImageEncoder(download_weights=False)  # Fully convolutional: any image size.
        return Decoder(image_size, image_size, download_weights=False)
    finally:
        keras.config.set_dtype_policy(previous)
