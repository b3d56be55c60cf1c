"""Adapt Stable Diffusion to a user's own X-rays: LoRA (or whole-U-Net) fine-tuning in Keras.

The objective is Stable Diffusion's own: VAE latents (times 0.18215, inside KerasCV's
encoder), noise added at a random timestep of the checkpoint's schedule, mean squared error
on the predicted noise. A share of captions is replaced by "" (caption dropout), so
classifier-free guidance keeps working after training.

Every random draw of an update (which images, timesteps, noise, dropped captions) is a
function of the seed and the update's number, drawn by NumPy in the input pipeline. So a
run resumed from a checkpoint makes exactly the updates an uninterrupted run makes, and
`train_step` holds no random state.

The pieces, one module each: `examples` (images and captions), `augment` (crops, rotations,
brightness and contrast), `plan` (the random draws),
`trainer` (the Keras model and optimizer), `kernels` (the layers as computed in training),
`callbacks` and `checkpoints`; this module puts them together.

`finetune(models, image_encoder, examples, out_dir, config)` writes into `out_dir`:

    lora.safetensors        the adapters, in diffusers' PEFT layout (xray.formats.lora_file); when the
                            whole U-Net trains, unet.weights.h5 instead
    lora_ema.safetensors    with `ema_decay`, the adapters' moving average (unet_ema.weights.h5)
    config.json             what was trained, on what, from which weights
    history.csv             the loss of every batch (min-SNR weighted, as trained) and its gradients' norm
    probe_loss.csv          the loss on fixed probe batches at every checkpoint (from update 0)
    loss_curve.png, tensorboard/
    samples/step_NNNNNN.png one image per fixed prompt and seed (a strip), from step 0 (before training)
    samples_progress.png    those rows stacked: the adaptation, step by step
    checkpoints/            the last resume point (trainable weights, optimizer, step)
"""

import dataclasses
import os
import time

import keras
import numpy as np

from genlab.errors import UserError
from genlab.files import atomic_path, read_csv, write_json
from xray.config import FinetuneConfig
from xray.formats.diffusers import open_checkpoint
from xray.formats.keras_cv_files import (
    CONVERSION_FILE,
    IMAGE_ENCODER_FILE,
    KERAS_CV_FILES,
    TOKENIZER_FILE,
    read_conversion,
    save_keras_cv_weights,
    save_tokenizer,
)
from xray.sd.sampler import encode_texts, tokenize
from xray.training.adapters import add_adapters, load_adapters_into, merged_values, save_adapters
from xray.training.augment import Augmentation
from xray.training.callbacks import Checkpoint, SampleRow
from xray.training.checkpoints import latest_checkpoint, restore_checkpoint
from xray.training.examples import read_training_images, to_model_range
from xray.training.kernels import use_training_kernels
from xray.training.plan import PROBE_BATCHES, PROBE_FIRST, UpdatePlan
from xray.training.trainer import DiffusionFineTuner, training_optimizer

ADAPTERS_FILE = "lora.safetensors"
FULL_UNET_FILE = "unet.weights.h5"
AVERAGED_FILES = {ADAPTERS_FILE: "lora_ema.safetensors", FULL_UNET_FILE: "unet_ema.weights.h5"}
SAMPLE_PROMPTS = 4  # Prompts in each sample row (the first caption of each of the first classes).


@dataclasses.dataclass
class FinetuneResult:
    steps: int  # Optimizer updates done in all, this run and earlier ones.
    seconds: float  # This run's training time.
    first_probe_loss: float  # The loss on the fixed probe batches before training (update 0).
    last_probe_loss: float  # ... and after the last update.
    weights_file: str  # The adapters (or the whole U-Net's weights).
    # {module: Dense layer} with the trained adapters enabled (their moving average, with ema_decay); empty when
    # the whole U-Net trained.
    adapters: dict


def sample_prompts(examples, seed):
    """The fixed prompts and seeds of the sample rows: the first caption of each class, in order, and
    the seeds that follow the run's."""
    prompts = list(dict.fromkeys(example.caption for example in examples))[:SAMPLE_PROMPTS]
    return [(prompt, seed + i) for i, prompt in enumerate(prompts)]


def check_schedule(config):
    """A one-line error unless checkpoints and samples fall on whole numbers of updates."""
    if config.max_steps % config.checkpoint_every:
        raise UserError(
            f"--max_steps={config.max_steps} must be a multiple of --checkpoint_every={config.checkpoint_every}"
        )
    if config.sample_every and config.sample_every % config.checkpoint_every:
        raise UserError(
            f"--sample_every={config.sample_every} must be a multiple of --checkpoint_every={config.checkpoint_every}"
        )


def training_inputs(images, image_encoder, config):
    """(x, the encoder to run in each step): latents encoded once, or images and the frozen encoder
    (always with augmentation: each batch's augmented images need their own latents)."""
    if config.cache_latents and not Augmentation.of(config).on:
        latents = [
            np.asarray(image_encoder.predict_on_batch(to_model_range(images[i : i + 4])), dtype=np.float32)
            for i in range(0, len(images), 4)
        ]
        return np.concatenate(latents), None
    image_encoder.trainable = False
    return to_model_range(images), image_encoder


def enable_training(models, config, init_lora):
    """Freezes what does not train and enables the adapters ({module: layer}; none for a whole
    U-Net), started from `init_lora` when given; then the training kernels, unless turned off."""
    adapters = {}
    if config.full_unet:
        models.text_encoder.trainable = False
    else:
        for network in (models.diffusion_model, models.text_encoder):
            for variable in network.weights:
                variable.trainable = False
        groups = ("attention", "feed_forward") if config.lora_feed_forward else ("attention",)
        adapters = add_adapters("diffusion_model", models.diffusion_model, config.lora_rank, groups, config.seed)
        if config.lora_text_encoder:
            text_adapters = add_adapters(
                "text_encoder", models.text_encoder, config.lora_rank, ("attention",), config.seed + 10_000
            )
            adapters.update(text_adapters)
        if init_lora:
            load_adapters_into(adapters, init_lora)
    if config.training_kernels:
        use_training_kernels(models.diffusion_model)
        if config.lora_text_encoder:
            use_training_kernels(models.text_encoder)
    return adapters


def trained_parts(config):
    """What the record says was trained."""
    if config.full_unet:
        return "full U-Net"
    parts = ["attention"]
    if config.lora_feed_forward:
        parts.append("feed_forward")
    if config.lora_text_encoder:
        parts.append("text_encoder")
    return parts


def finetune(
    models, image_encoder, examples, out_dir, config=None, init_lora="", images=None, validation=None, verbose=1
):
    """Fine-tunes `models` (xray.weights.StableDiffusionModels) on `examples`; see the module docstring.

    `images` are the examples' pixels from `read_training_images`, when the caller has read
    them already (to check every file before building any network). `validation`, [(prompt,
    seed)], replaces the sample rows' prompts (by default the first caption of each class).

    Build the models (and compile nothing else) inside a `tf.distribute` strategy's scope to
    train under it. Run the same call again after an interruption: it resumes.
    """
    config = config or FinetuneConfig()
    check_schedule(config)
    if models.image_size != config.image_size:
        raise ValueError(f"the networks are built for {models.image_size} px, the config asks for {config.image_size}")
    if images is None:
        images = read_training_images(examples, config.image_size)
    captions = list(dict.fromkeys(example.caption for example in examples)) + [""]
    caption_ids = np.array([captions.index(example.caption) for example in examples])

    x, encoder_in_step = training_inputs(images, image_encoder, config)
    adapters = enable_training(models, config, init_lora)
    text_in_step = models.text_encoder if config.lora_text_encoder else None
    if text_in_step is None:
        contexts, tokens = encode_texts(models, captions), None
    else:
        contexts, tokens = None, np.array([tokenize(models.tokenizer, caption) for caption in captions], dtype=np.int32)
    augmentation = Augmentation.of(config) if encoder_in_step is not None else None
    plan = UpdatePlan(x, caption_ids, captions, models.schedule, config, contexts, tokens, augmentation)

    batches_per_update = config.gradient_accumulation
    optimizer = training_optimizer(config)
    if models.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = DiffusionFineTuner(models.diffusion_model, encoder_in_step, text_in_step)
    model.compile(optimizer=optimizer)

    os.makedirs(out_dir, exist_ok=True)
    weights_path = os.path.join(out_dir, FULL_UNET_FILE if config.full_unet else ADAPTERS_FILE)
    record = {
        "base_weights": models.weight_source,
        "image_size": config.image_size,
        "trained_on": len(examples),
        "targets": trained_parts(config),
    }
    write_json(
        os.path.join(out_dir, "config.json"), dict(record, config=dataclasses.asdict(config), captions=captions[:-1])
    )

    batches_done, checkpoint = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    if checkpoint:
        batches_done = restore_checkpoint(checkpoint, model)
        if verbose:
            print(
                f"Resuming from {checkpoint}: {batches_done // batches_per_update} of {config.max_steps} updates done"
            )
    history = [
        {"step": int(r["step"]), "loss": float(r["loss"]), "gradient_norm": float(r["gradient_norm"])}
        for r in read_csv(os.path.join(out_dir, "history.csv"))
    ]
    history = history[:batches_done]
    probe_history = [
        {"step": int(r["step"]), "probe_loss": float(r["probe_loss"])}
        for r in read_csv(os.path.join(out_dir, "probe_loss.csv"))
        if int(r["step"]) <= batches_done
    ]
    probe_batches = plan.dataset(PROBE_FIRST, PROBE_BATCHES)

    def probe():
        return float(model.evaluate(probe_batches, verbose=0, return_dict=True)["loss"])

    if batches_done == 0:
        probe_history = [{"step": 0, "probe_loss": probe()}]

    def save(path):
        if config.full_unet:
            with atomic_path(path) as tmp:
                models.diffusion_model.save_weights(tmp)
        else:
            save_adapters(path, adapters, dict(record, steps=len(history) // batches_per_update))

    def save_weights():
        save(weights_path)
        if config.ema_decay:
            with model.averaged_weights():
                save(os.path.join(out_dir, AVERAGED_FILES[os.path.basename(weights_path)]))

    every = config.checkpoint_every * batches_per_update
    total = config.max_steps * batches_per_update
    checkpointer = Checkpoint(
        out_dir, every, save_weights, history, probe_history, probe, keep=config.checkpoints_total_limit
    )
    callbacks = [checkpointer, keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), update_freq="epoch")]
    if config.sample_every:
        prompts, seeds = zip(*(validation or sample_prompts(examples, config.seed)))
        sampler = SampleRow(
            models,
            list(prompts),
            list(seeds),
            out_dir,
            config.sample_every * batches_per_update,
            every,
            config.sample_steps,
        )
        if batches_done == 0:
            sampler.draw(0)
        callbacks.append(sampler)
    start = time.perf_counter()
    if batches_done < total:
        model.fit(
            plan.dataset(batches_done, total - batches_done),
            epochs=total // every,
            steps_per_epoch=every,
            initial_epoch=batches_done // every,
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )
    else:  # As fit ends: with a moving average, the networks hold it from here (what --merge writes).
        model.optimizer.finalize_variable_values(model.trainable_variables)
    seconds = time.perf_counter() - start
    if checkpointer.stopped_on_nan:
        good, _ = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
        raise UserError(
            f"the loss or a weight became NaN or infinite before update {len(history) // batches_per_update}; "
            f"the last good checkpoint ({good // batches_per_update} updates) and {os.path.basename(weights_path)} "
            "are kept: lower --learning_rate and run again"
        )
    return FinetuneResult(
        len(history) // batches_per_update,
        seconds,
        probe_history[0]["probe_loss"],
        probe_history[-1]["probe_loss"],
        weights_path,
        adapters,
    )


def write_merged(out_dir, models, image_encoder, adapters, weights, weights_path=""):
    """Writes the trained networks as a `--weights=local` folder: the base with the adapters
    ({module: layer}, from `FinetuneResult`) merged into its kernels, or the trained U-Net.

    The networks in memory are written, not built again: TensorFlow keeps a network it has
    run in graph mode after it is deleted, so a second set would add a second set's memory.
    The VAE encoder, the tokenizer and, for a converted checkpoint, its schedule go beside them.
    """
    networks = [models.text_encoder, models.diffusion_model, models.decoder, image_encoder]
    if any(weight.dtype in ("bfloat16", "float16") for network in networks for weight in network.weights):
        raise ValueError(
            "write_merged needs networks loaded with frozen=False: frozen ones hold their weights rounded "
            "to the compute dtype, and merged files would keep the rounding"
        )
    values = merged_values(adapters)
    os.makedirs(out_dir, exist_ok=True)
    for name, (file_name, _) in KERAS_CV_FILES.items():
        save_keras_cv_weights(getattr(models, name), os.path.join(out_dir, file_name), values)
    save_keras_cv_weights(image_encoder, os.path.join(out_dir, IMAGE_ENCODER_FILE[0]))
    save_tokenizer(models.tokenizer, os.path.join(out_dir, TOKENIZER_FILE))
    if models.numerics == "diffusers":
        if weights == "diffusers":
            scheduler = open_checkpoint(weights_path).read_config("scheduler", "scheduler_config.json")
        else:
            scheduler = read_conversion(weights_path)["scheduler"]
        write_json(
            os.path.join(out_dir, CONVERSION_FILE),
            {"source": models.weight_source, "scheduler": scheduler, "numerics": "diffusers"},
        )
    return out_dir
