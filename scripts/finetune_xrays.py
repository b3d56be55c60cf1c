"""Adapts Stable Diffusion to your own X-rays: LoRA adapters (or the whole U-Net) trained with
Stable Diffusion's own objective, then used by genlab-xray --lora and by diffusers.

  genlab-xray-finetune --data_dir=data/chest_xray/train --output_dir=runs/xray_lora
  genlab-xray-finetune --data_dir=DIR --prompt_file=prompts.yaml --max_steps=2000 --lora_feed_forward
  genlab-xray --lora=runs/xray_lora/lora.safetensors --prompt_file=prompts.yaml      # generate with it

DATA_DIR holds one sub-folder of PNG/JPEG images per class (captioned by --prompt_file or
--caption_template), or a metadata.csv with file_name and a text/caption/prompt column
(Hugging Face ImageFolder's layout, and genlab-xray's). Writes lora.safetensors (diffusers'
LoRA layout: StableDiffusionPipeline.load_lora_weights reads it), loss_curve.png,
samples_progress.png, history.csv, tensorboard/ and a resume checkpoint into OUTPUT_DIR;
run the same command again to resume. --merge also writes full KerasCV weight files.
"""

import os

from absl import flags

from genlab.errors import UserError
from genlab.files import check_output_path
from genlab.runtime import (
    STRATEGIES,
    keep_torch_out,
    limit_malloc_arenas,
    use_onednn_kernels,
)
from scripts.common_flags import positive, run_program
from scripts.xray_flags import define_weight_flags
from xray.config import DEFAULT_CAPTION_TEMPLATE, FinetuneConfig

_DEFAULTS = FinetuneConfig()
flags.DEFINE_string(
    "data_dir",
    None,
    "Your X-rays: one sub-folder per class, or a folder with metadata.csv (file_name + text/caption/prompt).",
    required=True,
)
flags.DEFINE_string(
    "output_dir", "runs/xray_lora", "Where the adapters, curves, samples and checkpoints go (run again to resume)."
)
flags.DEFINE_string(
    "prompt_file", "", "Captions per class folder: the JSON/YAML prompt file genlab-xray reads (class -> prompt)."
)
flags.DEFINE_string(
    "caption_template",
    DEFAULT_CAPTION_TEMPLATE,
    "Caption of each class folder's images without --prompt_file; {class_name} is the folder's name.",
)
define_weight_flags()
flags.DEFINE_integer("lora_rank", _DEFAULTS.lora_rank, "Rank of each adapter: higher learns more, in more memory.")
flags.DEFINE_bool(
    "lora_feed_forward",
    _DEFAULTS.lora_feed_forward,
    "Adapters on the U-Net's feed-forward layers too, not only on attention (q, k, v, out).",
)
flags.DEFINE_bool("lora_text_encoder", _DEFAULTS.lora_text_encoder, "Adapters on the text encoder's attention too.")
flags.DEFINE_bool(
    "full_unet", _DEFAULTS.full_unet, "Train every U-Net weight instead of adapters (several times the memory)."
)
flags.DEFINE_string("init_lora", "", "Start from these adapters (same rank and targets) instead of fresh ones.")
flags.DEFINE_float(
    "learning_rate",
    _DEFAULTS.learning_rate,
    "Peak learning rate (AdamW), reached after --warmup_steps, then cosine decay.",
    lower_bound=0.0,
)
flags.DEFINE_integer("warmup_steps", _DEFAULTS.warmup_steps, "Updates of linear warm-up.", lower_bound=0)
flags.DEFINE_integer("max_steps", _DEFAULTS.max_steps, "Optimizer updates in all (a multiple of --checkpoint_every).")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per batch.")
flags.DEFINE_integer(
    "gradient_accumulation",
    _DEFAULTS.gradient_accumulation,
    "Batches summed into each update: a larger effective batch in the same memory.",
)
flags.DEFINE_float(
    "caption_dropout",
    _DEFAULTS.caption_dropout,
    "Share of captions replaced by '' so classifier-free guidance keeps working.",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "snr_gamma",
    _DEFAULTS.snr_gamma,
    "Min-SNR loss weighting (diffusers' recommended 5): each example's error times min(SNR, gamma) / SNR, so the "
    "nearly clean timesteps do not dominate and training converges in fewer updates. 0 weighs every timestep alike.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "noise_offset",
    _DEFAULTS.noise_offset,
    "Offset noise: a constant per image and latent channel added to the training noise, so the model learns to "
    "shift a whole image's brightness (black backgrounds, white bone). 0.05-0.1 for radiographs; 0 for none.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "max_grad_norm",
    _DEFAULTS.max_grad_norm,
    "Clip the update's gradients to this global norm, against a rare large batch undoing training; history.csv "
    "has each batch's norm before clipping. 0 for no clipping.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "ema_decay",
    _DEFAULTS.ema_decay,
    "Keep an exponential moving average of the trained weights with this decay (0.999 for runs of thousands of "
    "updates; a short run's average lags its weights): saved as lora_ema.safetensors beside lora.safetensors, used "
    "for the sample rows, and what --merge writes. 0 for none.",
    lower_bound=0.0,
    upper_bound=0.99999,
)
flags.DEFINE_float(
    "random_crop",
    _DEFAULTS.random_crop,
    "Augmentation: crop each training image at random to this share of its side or more, then scale it back "
    "(0.85 for a few hundred images); 1 keeps the whole image. Any augmentation encodes each batch with the VAE "
    "(no latent cache): slower steps.",
    lower_bound=0.1,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "random_rotation",
    _DEFAULTS.random_rotation,
    "Augmentation: rotate each training image by up to this many degrees either way, as positioning varies "
    "(5 is typical); 0 for none.",
    lower_bound=0.0,
    upper_bound=45.0,
)
flags.DEFINE_float(
    "brightness_contrast",
    _DEFAULTS.brightness_contrast,
    "Augmentation: contrast times 1 +- this and brightness +- this share of the range, as exposures vary "
    "(0.1 is typical); 0 for none.",
    lower_bound=0.0,
    upper_bound=0.5,
)
flags.DEFINE_bool(
    "random_flip",
    _DEFAULTS.random_flip,
    "Augmentation: flip half the training images left to right. Off: radiographs have a side (the heart is on the "
    "left of a chest film), and a flipped one shows another, rare anatomy (situs inversus). Turn on only for views "
    "without one.",
)
flags.DEFINE_bool("cache_latents", _DEFAULTS.cache_latents, "Encode each image with the VAE once, not at every step.")
flags.DEFINE_integer(
    "checkpoint_every", _DEFAULTS.checkpoint_every, "Updates between resume points, weight files and curve updates."
)
flags.DEFINE_integer(
    "checkpoints_total_limit",
    _DEFAULTS.checkpoints_total_limit,
    "Resume points kept in OUTPUT_DIR/checkpoints, the newest; older ones are deleted. Each holds the "
    "trained weights and the optimizer's state: small for adapters, about three times the U-Net's weights "
    "with --full_unet. Keep more to go back to an earlier point by deleting the newer ones.",
)
flags.DEFINE_integer(
    "sample_every",
    _DEFAULTS.sample_every,
    "Updates between sample rows (fixed prompts and seeds); 0 for none.",
    lower_bound=0,
)
flags.DEFINE_string(
    "validation_prompts",
    "",
    "The sample rows' prompts and seeds: a JSON or YAML list of prompts or {prompt, seed} entries (default: the "
    "first caption of each class, seeds from --seed).",
)
flags.DEFINE_integer("sample_steps", _DEFAULTS.sample_steps, "DDIM steps of each sample image.")
flags.DEFINE_bool(
    "merge",
    False,
    "Also write the adapters merged into full KerasCV weight files, OUTPUT_DIR/merged, for --weights=local. "
    "Under a mixed --precision this keeps the frozen weights in float32 while training, about twice their memory.",
)
flags.DEFINE_bool(
    "training_kernels",
    _DEFAULTS.training_kernels,
    "Train with the project's kernels for KerasCV's "
    "attention, normalizations, convolutions and LoRA layers: the same functions, in less memory and time "
    "(xray/training/kernels). --notraining_kernels runs KerasCV's stock layers: to debug, or when a new "
    "Keras or KerasCV release breaks the kernels.",
)
flags.DEFINE_bool(
    "cpu_onednn",
    True,
    "On a CPU, run TensorFlow's oneDNN kernels, which it turns on by itself only on CPUs with "
    "AVX-512 VNNI/BF16 or AMX: attention's matrix products are much faster at 512 px. No effect on GPUs.",
)
flags.DEFINE_enum("strategy", "auto", STRATEGIES, "tf.distribute strategy, as genlab-train-gan's.")
flags.DEFINE_string("tpu", "", "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed, "Seed for the adapters' start, data order, timesteps and noise.", lower_bound=0
)
for _name in (
    "lora_rank",
    "max_steps",
    "batch_size",
    "gradient_accumulation",
    "checkpoint_every",
    "checkpoints_total_limit",
    "sample_steps",
):
    positive(_name)
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")
    if FLAGS.full_unet and (FLAGS.lora_text_encoder or FLAGS.init_lora):
        raise UserError("--full_unet trains the U-Net itself: leave out --lora_text_encoder and --init_lora")
    keep_torch_out()  # These before KerasCV and TensorFlow load, which the next imports do.
    limit_malloc_arenas()
    if FLAGS.cpu_onednn:
        use_onednn_kernels()
    from xray.data.prompts import load_prompt_file, load_validation_prompts

    prompts = {p.class_name: p.prompt for p in load_prompt_file(FLAGS.prompt_file)} if FLAGS.prompt_file else None
    validation = load_validation_prompts(FLAGS.validation_prompts, FLAGS.seed) if FLAGS.validation_prompts else None
    from xray.training.examples import read_training_images, training_examples

    examples = training_examples(FLAGS.data_dir, FLAGS.caption_template, prompts)
    print(f"Reading {len(examples)} images at {FLAGS.image_size} px")
    images = read_training_images(examples, FLAGS.image_size)  # Every file checked before any network is built.
    config = FinetuneConfig(
        image_size=FLAGS.image_size,
        lora_rank=FLAGS.lora_rank,
        lora_feed_forward=FLAGS.lora_feed_forward,
        lora_text_encoder=FLAGS.lora_text_encoder,
        full_unet=FLAGS.full_unet,
        learning_rate=FLAGS.learning_rate,
        warmup_steps=FLAGS.warmup_steps,
        max_steps=FLAGS.max_steps,
        batch_size=FLAGS.batch_size,
        gradient_accumulation=FLAGS.gradient_accumulation,
        caption_dropout=FLAGS.caption_dropout,
        snr_gamma=FLAGS.snr_gamma,
        noise_offset=FLAGS.noise_offset,
        max_grad_norm=FLAGS.max_grad_norm,
        ema_decay=FLAGS.ema_decay,
        random_crop=FLAGS.random_crop,
        random_rotation=FLAGS.random_rotation,
        brightness_contrast=FLAGS.brightness_contrast,
        random_flip=FLAGS.random_flip,
        cache_latents=FLAGS.cache_latents,
        checkpoint_every=FLAGS.checkpoint_every,
        checkpoints_total_limit=FLAGS.checkpoints_total_limit,
        sample_every=FLAGS.sample_every,
        sample_steps=FLAGS.sample_steps,
        seed=FLAGS.seed,
        training_kernels=FLAGS.training_kernels,
    )
    import keras

    from genlab.distribute import make_strategy
    from xray.training.finetune import finetune, write_merged
    from xray.weights import load_image_encoder, load_stable_diffusion

    keras.utils.set_random_seed(FLAGS.seed)  # --weights=random then gives the same networks every run.
    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)
    # Weights that never train are stored in the compute dtype under a mixed precision, unless
    # the whole U-Net trains (float32 master weights) or --merge will write them out (exactly).
    frozen = not (FLAGS.full_unet or FLAGS.merge)
    with strategy.scope():
        models = load_stable_diffusion(
            FLAGS.image_size,
            FLAGS.weights,
            FLAGS.weights_path,
            FLAGS.tokenizer_path,
            precision=FLAGS.precision,
            check_texts=sorted({e.caption for e in examples} | {prompt for prompt, _ in validation or []}),
            frozen=frozen,
        )
        image_encoder = load_image_encoder(FLAGS.weights, FLAGS.weights_path, FLAGS.precision, frozen=frozen)
        result = finetune(
            models,
            image_encoder,
            examples,
            FLAGS.output_dir,
            config,
            init_lora=FLAGS.init_lora,
            images=images,
            validation=validation,
        )
    print(
        f"{result.steps} updates done ({result.seconds:.0f} s this run). Loss on the fixed probe batches: "
        f"{result.first_probe_loss:.4f} before training, {result.last_probe_loss:.4f} now. {result.weights_file}"
    )
    if FLAGS.merge:
        merged = write_merged(
            os.path.join(FLAGS.output_dir, "merged"),
            models,
            image_encoder,
            result.adapters,
            FLAGS.weights,
            FLAGS.weights_path,
        )
        print(f"Merged KerasCV weight files: genlab-xray --weights=local --weights_path={merged}")
    print(f"Loss curve, sample rows and history in {os.path.abspath(FLAGS.output_dir)}")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
