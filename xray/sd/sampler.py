"""Text encoding and the DDIM sampling loop over KerasCV's Stable Diffusion networks.

The arithmetic is KerasCV's `generate_image` (deterministic DDIM, eta 0), rewritten so that
  * each image starts from its own noise (`initial_noise(seed)`), so an image depends on
    its seed only, not on the batch it was made in;
  * each row of a batch has its own prompt and negative prompt;
  * guidance runs the unconditional and conditional passes as one U-Net batch of 2B,
    not two calls, and skips the unconditional pass at guidance scale 1;
  * the noise schedule can come from a diffusers checkpoint's scheduler config;
  * it can start from real images (`Variation`): diffusers' image-to-image, and with a mask
    its inpainting rule for U-Nets of 4 input channels.
"""

import dataclasses
import math

import numpy as np

# KerasCV's own schedule: private, held by setup.py's keras-cv==0.9.0 pin (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD

from genlab.errors import UserError
from genlab.images import to_uint8
from genlab.noise import gaussian_noise
from xray.config import steps_run
from xray.sd.networks import MAX_PROMPT_TOKENS

END_OF_TEXT = 49407  # CLIP's <|endoftext|>; Stable Diffusion 1.x also pads with it.
LATENT_CHANNELS = 4
LATENT_DOWNSCALE = 8  # The VAE maps 8x8 pixels to one latent.
_SPACINGS = ("linspace", "leading", "trailing")


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """The noise levels of training (alphas_cumprod) and which of them sampling visits."""

    alphas_cumprod: np.ndarray  # (num_train_timesteps,), float64.
    timestep_spacing: str = "linspace"  # KerasCV's: round(arange(N) * 999 / (N - 1)).
    steps_offset: int = 0
    final_alpha_cumprod: float = 1.0  # The last step lands on a clean image (alpha 1).
    source: str = "keras_cv"

    @classmethod
    def keras_cv(cls):
        return cls(np.asarray(_ALPHAS_CUMPROD, dtype=np.float64))

    @classmethod
    def from_diffusers_config(cls, config, source):
        """The schedule a diffusers `scheduler_config.json` describes, sampled with DDIM.

        PNDM, DDIM, Euler and the others share these training-time settings; only the
        update rule differs, and ours stays DDIM.
        """
        prediction = config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise UserError(
                f"{source}: prediction_type {prediction!r} is not supported; Stable Diffusion 1.x checkpoints predict "
                "'epsilon' (v-prediction is SD 2.x)"
            )
        steps = int(config.get("num_train_timesteps", 1000))
        beta_start, beta_end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        kind = config.get("beta_schedule", "scaled_linear")
        if kind == "scaled_linear":
            betas = np.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=np.float64) ** 2
        elif kind == "linear":
            betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
        else:
            raise UserError(f"{source}: beta_schedule {kind!r} is not supported; expected 'scaled_linear' or 'linear'")
        spacing = config.get("timestep_spacing", "leading")
        if spacing not in _SPACINGS:
            raise UserError(f"{source}: timestep_spacing {spacing!r} is not one of {', '.join(_SPACINGS)}")
        alphas_cumprod = np.cumprod(1.0 - betas)
        final = 1.0 if config.get("set_alpha_to_one", False) else float(alphas_cumprod[0])
        return cls(
            alphas_cumprod,
            spacing,
            int(config.get("steps_offset", 0)),
            final,
            source=config.get("_class_name", "scheduler_config"),
        )

    def timesteps(self, num_steps):
        """The training timesteps visited, noisiest first (diffusers' definitions of each spacing)."""
        total = len(self.alphas_cumprod)
        if self.timestep_spacing == "linspace":
            ratio = (total - 1) / (num_steps - 1) if num_steps > 1 else total
            ascending = np.round(np.arange(num_steps) * ratio)
        elif self.timestep_spacing == "leading":
            ascending = np.arange(num_steps) * (total // num_steps) + self.steps_offset
        else:  # trailing
            ascending = np.round(np.arange(total, 0, -total / num_steps))[::-1] - 1
        return np.clip(ascending, 0, total - 1).astype(np.int64)[::-1]

    def describe(self):
        return f"DDIM eta=0, {self.timestep_spacing} spacing, offset {self.steps_offset} ({self.source} schedule)"


@dataclasses.dataclass(frozen=True, eq=False)
class Variation:
    """Where image-to-image starts, as diffusers' StableDiffusionImg2ImgPipeline and (with a mask)
    StableDiffusionInpaintPipeline do it.

    Only the last `min(int(steps * strength), steps)` of the schedule's steps run
    (`variation_timesteps`), from the sources' latents noised to the first of them. At strength 1
    image-to-image still keeps sqrt(alpha-bar) of the source (about 7% at timestep 999), as
    diffusers' does; inpainting starts from the noise alone there, as diffusers' does. With a mask,
    after each step the latent outside it is replaced by the source's latent noised to the next
    timestep (the clean latent after the last): the model paints inside, the source stays outside.
    """

    latents: np.ndarray  # (B, h, w, 4): the sources' latents, scaled as the VAE encoder gives them.
    strength: float  # In (0, 1]: how much of the schedule runs, so how far the result may move.
    mask: np.ndarray | None = None  # (B, h, w, 1), 1 where the image is regenerated, 0 where kept.


def variation_timesteps(schedule, num_steps, strength):
    """The timesteps image-to-image visits: the last min(int(num_steps * strength), num_steps) of
    text-to-image's (diffusers' `get_timesteps`)."""
    return schedule.timesteps(num_steps)[num_steps - steps_run(num_steps, strength) :]


def add_noise(latents, noise, alpha_cumprod):
    """`latents` noised to the level alpha-bar (the forward process; diffusers' `add_noise`)."""
    return (math.sqrt(alpha_cumprod) * latents + math.sqrt(1.0 - alpha_cumprod) * noise).astype(np.float32)


def tokenize(tokenizer, text):
    """CLIP token ids padded to MAX_PROMPT_TOKENS, or a `UserError` if the text is longer than Stable
    Diffusion reads."""
    ids = tokenizer.encode(text)  # With the start and end tokens.
    if len(ids) > MAX_PROMPT_TOKENS:
        raise UserError(
            f"prompt {text[:60]!r}... is {len(ids) - 2} tokens; Stable Diffusion reads at most "
            f"{MAX_PROMPT_TOKENS - 2}: shorten it"
        )
    return ids + [END_OF_TEXT] * (MAX_PROMPT_TOKENS - len(ids))


def encode_texts(models, texts):
    """Text-encoder states (len(texts), MAX_PROMPT_TOKENS, 768) for each text, in order."""
    tokens = np.array([tokenize(models.tokenizer, text) for text in texts], dtype=np.int32)
    positions = np.tile(np.arange(MAX_PROMPT_TOKENS, dtype=np.int32), (len(texts), 1))
    states = models.text_encoder.predict_on_batch({"tokens": tokens, "positions": positions})
    return np.asarray(states, dtype=np.float32)


def initial_noise(seed, image_size):
    """The starting latent of one image: a function of its seed and size alone (NumPy's PCG64)."""
    side = image_size // LATENT_DOWNSCALE
    return gaussian_noise(seed, (side, side, LATENT_CHANNELS))


def timestep_embedding(timestep, batch_size, dim=320, max_period=10000):
    """[cos | sin] of the timestep at 160 frequencies, as KerasCV's U-Net was trained with."""
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half)
    args = np.float32(timestep) * freqs
    embedding = np.concatenate([np.cos(args), np.sin(args)]).astype(np.float32)
    return np.tile(embedding, (batch_size, 1))


def sample_latents(
    models, noise, context, unconditional_context, num_steps, guidance_scale, on_step=None, variation=None
):
    """Denoises `noise` (B, h, w, 4) with DDIM under classifier-free guidance; returns clean latents.

    `context` and `unconditional_context` are (B, MAX_PROMPT_TOKENS, 768): each row's prompt and negative
    prompt. `on_step(steps_done)` is called after every U-Net step (for progress bars). With a
    `Variation`, the real images it holds are varied instead (see there).
    """
    schedule = models.schedule
    alphas = schedule.alphas_cumprod
    noise = noise.astype(np.float32)
    if variation is None:
        timesteps, latent = schedule.timesteps(num_steps), noise
    else:
        timesteps = variation_timesteps(schedule, num_steps, variation.strength)
        from_noise = variation.mask is not None and variation.strength == 1.0
        latent = noise if from_noise else add_noise(variation.latents, noise, alphas[timesteps[0]])
    guided = guidance_scale != 1.0
    batch = len(noise)
    contexts = np.concatenate([unconditional_context, context]) if guided else context
    for i, timestep in enumerate(timesteps):
        a_t = alphas[timestep]
        a_prev = alphas[timesteps[i + 1]] if i + 1 < len(timesteps) else schedule.final_alpha_cumprod
        latents_in = np.concatenate([latent, latent]) if guided else latent
        eps = np.asarray(
            models.diffusion_model.predict_on_batch(
                {
                    "latent": latents_in,
                    "timestep_embedding": timestep_embedding(timestep, len(latents_in)),
                    "context": contexts,
                }
            ),
            dtype=np.float32,
        )
        if guided:
            eps_unconditional, eps_conditional = eps[:batch], eps[batch:]
            eps = eps_unconditional + guidance_scale * (eps_conditional - eps_unconditional)
        predicted_clean = (latent - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        latent = (math.sqrt(a_prev) * predicted_clean + math.sqrt(1.0 - a_prev) * eps).astype(np.float32)
        if variation is not None and variation.mask is not None:
            last = i + 1 == len(timesteps)
            kept = variation.latents if last else add_noise(variation.latents, noise, alphas[timesteps[i + 1]])
            latent = np.where(variation.mask > 0.5, latent, kept).astype(np.float32)
        if on_step:
            on_step(i + 1)
    return latent


def decode_to_uint8(models, latents):
    """The VAE decoder's RGB images (B, H, W, 3) as uint8."""
    return to_uint8(models.decoder.predict_on_batch(latents))
