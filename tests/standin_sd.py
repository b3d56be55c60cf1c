"""Stand-ins for KerasCV's Stable Diffusion networks: the same inputs and outputs, a few thousand weights.

The sampler loop, per-image seeds, batching, resume, sharding, metadata and the grid do not
depend on what the networks learned, only on how they are called. These small networks are
called exactly as KerasCV's are (`predict_on_batch` with the same named inputs and shapes),
and their outputs depend on every input, so a mixed-up prompt, timestep or latent still
shows. The real networks are built in a few integration tests (`random_sd`).
"""

import sys

import keras
from keras import layers, ops

from xray.config import XrayConfig
from xray.generate import generate_dataset
from xray.networks import MAX_PROMPT_TOKENS
from xray.prompts import ClassPrompt
from xray.sampler import LATENT_CHANNELS, LATENT_DOWNSCALE, NoiseSchedule
from xray.weights import StableDiffusionModels

VOCABULARY = 49408  # CLIP's.
WIDTH = 32  # The stand-in text encoder's state width (KerasCV's is 768).


def text_encoder():
    tokens = keras.Input((MAX_PROMPT_TOKENS,), dtype="int32", name="tokens")
    positions = keras.Input((MAX_PROMPT_TOKENS,), dtype="int32", name="positions")
    x = layers.Embedding(VOCABULARY, WIDTH)(tokens) + layers.Embedding(MAX_PROMPT_TOKENS, WIDTH)(positions)
    return keras.Model([tokens, positions], layers.Dense(WIDTH, activation="tanh")(x), name="text_encoder")


def diffusion_model(image_size):
    side = image_size // LATENT_DOWNSCALE
    latent = keras.Input((side, side, LATENT_CHANNELS), name="latent")
    timestep = keras.Input((320,), name="timestep_embedding")
    context = keras.Input((MAX_PROMPT_TOKENS, WIDTH), name="context")
    time_features = layers.Dense(8)(timestep)[:, None, None, :]
    text_features = layers.Dense(8)(ops.mean(context, axis=1))[:, None, None, :]
    x = layers.Conv2D(8, 3, padding="same")(latent) + time_features + text_features
    eps = layers.Conv2D(LATENT_CHANNELS, 3, padding="same")(ops.tanh(x))
    return keras.Model([latent, timestep, context], eps, name="diffusion_model")


def decoder(image_size):
    side = image_size // LATENT_DOWNSCALE
    latent = keras.Input((side, side, LATENT_CHANNELS))
    x = layers.UpSampling2D(LATENT_DOWNSCALE, interpolation="bilinear")(latent)
    return keras.Model(latent, layers.Conv2D(3, 3, padding="same", activation="tanh")(x), name="decoder")


def standin_models(tokenizer, image_size=128, seed=0):
    """`StableDiffusionModels` with stand-in networks and CLIP's real tokenizer."""
    keras.utils.set_random_seed(seed)
    return StableDiffusionModels(tokenizer, text_encoder(), diffusion_model(image_size), decoder(image_size),
                                 weight_source="stand-in (test networks)", schedule=NoiseSchedule.keras_cv(),
                                 image_size=image_size, precision="float32", numerics="keras_cv")


KILL_TEST_PROMPTS = [ClassPrompt("chest", "Frontal chest X-ray"), ClassPrompt("knee", "Knee X-ray, lateral view", "color")]
KILL_TEST_CONFIG = XrayConfig(images_per_prompt=30, batch_size=1, steps=2)


if __name__ == "__main__":
    # `python tests/standin_sd.py OUT BPE`: the dataset the resume test kills mid-run.
    from xray.weights import load_tokenizer

    output_dir, bpe_path = sys.argv[1:]
    generate_dataset(standin_models(load_tokenizer(bpe_path)), KILL_TEST_PROMPTS, KILL_TEST_CONFIG, output_dir, verbose=False)
