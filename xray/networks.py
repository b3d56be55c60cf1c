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


def build_network(name, image_size, precision):
    """One of KerasCV's networks (NETWORKS or IMAGE_ENCODER), untrained, with layers in `precision`."""
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
