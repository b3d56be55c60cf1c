"""The X-ray lab's settings and choices, and their cheap checks: no TensorFlow, so the program can
define its flags from them at once."""

import dataclasses

from genlab.errors import UserError

WEIGHT_SOURCES = ("keras_cv", "local", "diffusers", "random")  # See xray.weights.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TOKENIZER_ENV_VAR = "CLIP_BPE_PATH"
# What radiographs are not; Stable Diffusion drifts towards these for medical prompts.
DEFAULT_NEGATIVE_PROMPT = "color, text, watermark, photograph, painting, cartoon, blurry, low quality"


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


@dataclasses.dataclass
class VariationConfig:
    """Image-to-image (xray.generation.variations): real X-rays varied under their class's prompt."""

    init_images: str  # Class folders of real images, the judge's and fine-tuner's layout.
    strength: float = 0.5  # In (0, 1]: the share of the steps that run; 1 keeps only the layout's trace.
    variations_per_image: int = 1
    images_per_class: int = 0  # Fill each class up to this many, cycling through its images; 0: off.
    masks: str = ""  # Class folders of masks with the images' file names, white where regenerated.


def steps_run(steps, strength):
    """How many of `steps` denoising steps image-to-image runs (diffusers' rule), or a `UserError`
    for a strength outside (0, 1] or one that runs none."""
    if not 0.0 < strength <= 1.0:
        raise UserError(f"--strength={strength:g} is not in (0, 1]; 0.3 keeps the image close, 0.8 varies it freely")
    run = min(int(steps * strength), steps)
    if run == 0:
        raise UserError(
            f"--strength={strength:g} with --steps={steps} runs no denoising step (int(steps * strength) = 0); "
            f"raise --strength to at least {1 / steps:.3g} or --steps"
        )
    return run


# The judge's classifiers (xray.judging.judge): a small CNN trained from scratch, or a frozen
# keras.applications backbone with ImageNet weights under a new head.
BACKBONES = ("small_cnn", "mobilenet_v3_small", "efficientnet_v2_b0", "densenet121")


@dataclasses.dataclass
class JudgeConfig:
    image_size: int = 128  # The classifier's input; every image is centre-cropped and resized to it.
    backbone: str = "small_cnn"
    backbone_weights: str = "imagenet"  # Or a local .weights.h5 file (offline machines).
    epochs: int = 40  # The small CNN has no normalization to speed it up: small sets need the steps.
    batch_size: int = 32
    learning_rate: float = 1e-3
    holdout_fraction: float = 0.2  # Of each real class: the classifier's test split, and TSTR's.
    tstr: bool = True
    # The augmentation test (xray.judging.augmentation): "auto" runs it when every class has enough
    # real test images to show a few points' difference; "on" always; "off" never.
    augmentation: str = "auto"
    augmentation_seeds: int = 3
    seed: int = 0


# What fine-tuning trains (xray.training.finetune): LoRA on these groups of projections, or the whole U-Net.
LORA_GROUPS = ("attention", "feed_forward")
DEFAULT_CAPTION_TEMPLATE = "X-ray radiograph, {class_name}"  # For class folders without a prompt file.


@dataclasses.dataclass
class FinetuneConfig:
    image_size: int = 512  # Training and sample size, a multiple of 128; images are centre-cropped to it.
    lora_rank: int = 4
    lora_feed_forward: bool = False  # Adapters on the feed-forward layers too, not just attention.
    lora_text_encoder: bool = False  # Adapters on the text encoder's attention as well.
    full_unet: bool = False  # Train every U-Net weight instead of adapters (needs the memory).
    learning_rate: float = 1e-4
    warmup_steps: int = 50
    max_steps: int = 1000  # Optimizer updates.
    batch_size: int = 1
    gradient_accumulation: int = 1  # Batches summed per update: a larger batch in the same memory.
    caption_dropout: float = 0.1  # Share of captions replaced by "", so guidance keeps working.
    # Min-SNR loss weighting (Hang et al. 2023): each example's error times min(SNR, gamma) / SNR, so the
    # nearly clean timesteps, easy and many, do not dominate the gradient; 0 weighs all alike.
    snr_gamma: float = 5.0
    # Offset noise: a constant per image and latent channel added to the training noise, this many
    # standard deviations. Zero-mean noise never moves a whole image's brightness, so the model never
    # learns to make the near-black backgrounds and near-white bone of radiographs.
    noise_offset: float = 0.05
    max_grad_norm: float = 1.0  # Gradients clipped to this global norm (after accumulation); 0 for none.
    # Decay of an exponential moving average of the trained weights, saved beside them and drawn
    # with in the sample rows; 0 for none. Off by default: a short run's average lags its weights.
    ema_decay: float = 0.0
    # Augmentation of the training images (xray.training.augment), each off by default: it needs the
    # VAE in every step, for the augmented images' latents, so it turns the latent cache off.
    random_crop: float = 1.0  # Smallest share of the side a random crop keeps; 1: the whole (centre-cropped) image.
    random_rotation: float = 0.0  # Degrees either way.
    brightness_contrast: float = 0.0  # Contrast times 1 +- this, brightness +- this.
    random_flip: bool = False  # Left-right: off, as a flipped radiograph shows another anatomy.
    cache_latents: bool = True  # Encode each image once, not at every step.
    checkpoint_every: int = 100  # Updates between checkpoints (resume points) and loss-curve updates.
    checkpoints_total_limit: int = 1  # Resume points kept, the newest; older ones are deleted.
    sample_every: int = 100  # Updates between sample grids; 0 for none.
    sample_steps: int = 20  # DDIM steps of each sample image.
    seed: int = 0
    training_kernels: bool = (
        True  # xray.training.kernels in place of KerasCV's stock layers (same functions, less memory).
    )
