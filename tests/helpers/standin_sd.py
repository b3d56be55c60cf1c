"""Stand-ins for KerasCV's Stable Diffusion networks: the same inputs and outputs, a few thousand weights.

The sampler loop, per-image seeds, batching, resume, sharding, metadata and the grid do not
depend on what the networks learned, only on how they are called. These small networks are
called exactly as KerasCV's are (`predict_on_batch` with the same named inputs and shapes),
and their outputs depend on every input, so a mixed-up prompt, timestep or latent still
shows. The real networks are built in a few integration tests (xray/sd/test_networks.py, the LoRA
and bridge tests, and the programs' end-to-end tests).
"""

import sys

import keras
from keras import layers, ops

from xray.config import FinetuneConfig, VariationConfig, XrayConfig
from xray.data.prompts import ClassPrompt
from xray.generation.generate import generate_dataset
from xray.sd.networks import MAX_PROMPT_TOKENS
from xray.sd.sampler import LATENT_CHANNELS, LATENT_DOWNSCALE, NoiseSchedule
from xray.training.examples import training_examples
from xray.training.finetune import finetune
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


def image_encoder():
    """The VAE encoder's stand-in: 8x8 pixels to one latent, as KerasCV's (output already scaled)."""
    images = keras.Input((None, None, 3))
    return keras.Model(
        images, layers.Conv2D(LATENT_CHANNELS, LATENT_DOWNSCALE, strides=LATENT_DOWNSCALE)(images), name="image_encoder"
    )


def standin_models(tokenizer, image_size=128, seed=0):
    """`StableDiffusionModels` with stand-in networks and CLIP's real tokenizer."""
    keras.utils.set_random_seed(seed)
    return StableDiffusionModels(
        tokenizer,
        text_encoder(),
        diffusion_model(image_size),
        decoder(image_size),
        weight_source="stand-in (test networks)",
        schedule=NoiseSchedule.keras_cv(),
        image_size=image_size,
        precision="float32",
        numerics="keras_cv",
    )


# Whole-U-Net fine-tuning of the stand-ins (LoRA needs KerasCV's own layers): the resume test's run,
# every option of the recipe on (min-SNR, offset noise and clipping by default; augmentation encodes
# each batch with the stand-in VAE).
FINETUNE_KILL_CONFIG = FinetuneConfig(
    image_size=128,
    full_unet=True,
    max_steps=60,
    checkpoint_every=5,
    sample_every=0,
    warmup_steps=5,
    learning_rate=1e-2,
    batch_size=2,
    ema_decay=0.9,
    random_crop=0.8,
    random_rotation=5,
    brightness_contrast=0.1,
    random_flip=True,
)
KILL_TEST_PROMPTS = [
    ClassPrompt("chest", "Frontal chest X-ray"),
    ClassPrompt("knee", "Knee X-ray, lateral view", "color"),
]
KILL_TEST_CONFIG = XrayConfig(images_per_prompt=30, batch_size=1, steps=2)
# Image-to-image's kill test: each of a folder's images varied until the class holds 15.
VARY_KILL_PROMPTS = [ClassPrompt("circle", "X-ray of a circle"), ClassPrompt("square", "X-ray of a square")]
VARY_KILL_CONFIG = XrayConfig(batch_size=1, steps=4, negative_prompt="")


def vary_kill_variations(init_images):
    return VariationConfig(init_images, strength=0.5, images_per_class=15)


if __name__ == "__main__":
    # `python tests/standin_sd.py generate OUT BPE`: the dataset the resume test kills mid-run;
    # `python tests/standin_sd.py finetune OUT BPE DATA`: the fine-tuning run it kills;
    # `python tests/standin_sd.py vary OUT BPE INIT`: the image-to-image run it kills.
    from xray.weights import load_tokenizer

    mode, output_dir, bpe_path, *data_dir = sys.argv[1:]
    models = standin_models(load_tokenizer(bpe_path))
    if mode == "generate":
        generate_dataset(models, KILL_TEST_PROMPTS, KILL_TEST_CONFIG, output_dir, verbose=False)
    elif mode == "vary":
        variations = vary_kill_variations(data_dir[0])
        generate_dataset(models, VARY_KILL_PROMPTS, VARY_KILL_CONFIG, output_dir, False, variations, image_encoder())
    else:
        finetune(models, image_encoder(), training_examples(data_dir[0]), output_dir, FINETUNE_KILL_CONFIG, verbose=0)
