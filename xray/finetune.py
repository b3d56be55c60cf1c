"""Adapt Stable Diffusion to a user's own X-rays: LoRA (or whole-U-Net) fine-tuning in Keras.

The objective is Stable Diffusion's own: VAE latents (times 0.18215, inside KerasCV's
encoder), noise added at a random timestep of the checkpoint's schedule, mean squared error
on the predicted noise. A share of captions is replaced by "" (caption dropout), so
classifier-free guidance keeps working after training.

Every random draw of an update (which images, timesteps, noise, dropped captions) is a
function of the seed and the update's number, drawn by NumPy in the input pipeline. So a
run resumed from a checkpoint makes exactly the updates an uninterrupted run makes, and
`train_step` holds no random state.

`finetune(models, image_encoder, examples, out_dir, config)` writes into `out_dir`:

    lora.safetensors        the adapters, in diffusers' PEFT layout (xray.lora); when the
                            whole U-Net trains, unet.weights.h5 instead
    config.json             what was trained, on what, from which weights
    history.csv             the loss of every batch
    probe_loss.csv          the loss on fixed probe batches at every checkpoint (from update 0)
    loss_curve.png, tensorboard/
    samples/step_NNNNNN.png one image per fixed prompt and seed (a strip), from step 0 (before training)
    samples_progress.png    those rows stacked: the adaptation, step by step
    checkpoints/            the last resume point (trainable weights, optimizer, step)
"""

import dataclasses
import glob
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow.trainer import reduce_per_replica
from PIL import Image

from genlab import plots
from genlab.distribute import PrebuiltModel
from genlab.errors import UserError
from genlab.files import atomic_path, read_csv, write_csv, write_json
from xray.attention import recompute_in_backward
from xray.bridge import open_checkpoint
from xray.config import DEFAULT_CAPTION_TEMPLATE, FinetuneConfig
from xray.image_folder import class_folders, read_image
from xray.keras_cv_files import (CONVERSION_FILE, IMAGE_ENCODER_FILE, KERAS_CV_FILES, TOKENIZER_FILE, read_conversion,
                                 save_keras_cv_weights, save_tokenizer)
from xray.lora import add_adapters, load_adapters_into, merged_values, save_adapters
from xray.optimizer import AdamW
from xray.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents, timestep_embedding, tokenize

ADAPTERS_FILE = "lora.safetensors"
FULL_UNET_FILE = "unet.weights.h5"
CAPTION_COLUMNS = ("text", "caption", "prompt")  # Hugging Face ImageFolder's, and genlab-xray's metadata.csv.
PROBE_BATCHES = 4  # Fixed batches (images, timesteps, noise) the loss is measured on at every checkpoint.
PROBE_FIRST = 1 << 40  # Their numbers in the update plan: far beyond any training batch, so never trained on as such.
SAMPLE_PROMPTS = 4  # Prompts in each sample row (the first caption of each of the first classes).
_CHECKPOINT = re.compile(r"step_(\d+)\.npz$")


@dataclasses.dataclass(frozen=True)
class Example:
    path: str
    caption: str


@dataclasses.dataclass
class FinetuneResult:
    steps: int  # Optimizer updates done in all, this run and earlier ones.
    seconds: float  # This run's training time.
    first_probe_loss: float  # The loss on the fixed probe batches before training (update 0).
    last_probe_loss: float  # ... and after the last update.
    weights_file: str  # The adapters (or the whole U-Net's weights).
    adapters: dict  # {module: Dense layer} with the trained adapters enabled; empty when the whole U-Net trained.


def training_examples(data_dir, caption_template=DEFAULT_CAPTION_TEMPLATE, class_prompts=None):
    """The images and their captions, from either layout users have:

    - `data_dir/metadata.csv` with `file_name` and a caption column (text, caption or prompt);
    - class sub-folders, captioned by `class_prompts` ({class: caption}) or the template.
    """
    metadata = os.path.join(data_dir, "metadata.csv")
    if os.path.isfile(metadata):
        rows = read_csv(metadata)
        column = next((c for c in CAPTION_COLUMNS if rows and c in rows[0]), None)
        if column is None or "file_name" not in rows[0]:
            raise UserError(f"{metadata} needs a file_name column and a caption column ({', '.join(CAPTION_COLUMNS)})")
        examples = []
        for number, row in enumerate(rows, start=2):
            path = os.path.join(data_dir, row["file_name"])
            if not os.path.isfile(path):
                raise UserError(f"{metadata} line {number}: {row['file_name']} does not exist in {data_dir}")
            if not row[column].strip():
                raise UserError(f"{metadata} line {number}: {row['file_name']} has no caption in column {column!r}")
            examples.append(Example(path, row[column].strip()))
        return examples
    classes = class_folders(data_dir, "--data_dir")
    if class_prompts is not None:
        missing = sorted(set(classes) - set(class_prompts))
        if missing:
            raise UserError(f"class folder {missing[0]!r} has no prompt in --prompt_file; add one, or leave out --prompt_file "
                            "to caption classes with --caption_template")
    if "{class_name}" not in caption_template:
        raise UserError(f"--caption_template={caption_template!r} lacks {{class_name}}")
    return [Example(path, class_prompts[name] if class_prompts else caption_template.format(class_name=name.replace("_", " ")))
            for name, paths in classes.items() for path in paths]


def read_training_images(examples, image_size):
    """(N, size, size, 3) uint8 RGB: grayscale repeated. All files must have the same channel count."""
    images = np.empty((len(examples), image_size, image_size, 3), dtype=np.uint8)
    first_channels = None
    for i, example in enumerate(examples):
        pixels = read_image(example.path, image_size)
        channels = pixels.shape[-1]
        if first_channels is None:
            first_channels = channels
        elif channels != first_channels:
            kinds = {1: "grayscale", 3: "colour"}
            raise UserError(f"{example.path} is {kinds[channels]} but {examples[0].path} is {kinds[first_channels]}: "
                            "mixed channel counts; convert the folder to one kind")
        images[i] = np.round(np.broadcast_to(pixels, (image_size, image_size, 3)) * 255).astype(np.uint8)
    return images


def to_model_range(images):
    """uint8 images to Stable Diffusion's pixel range [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


class DiffusionFineTuner(PrebuiltModel):
    """Trains the U-Net (its adapters, or all of it) to predict the noise added to latents.

    Batches carry everything random, drawn by `UpdatePlan`: `x` (latents, or images when
    `image_encoder` is given), `signal` and `noise_level` (sqrt of alpha-bar and of
    1 - alpha-bar at each row's timestep), `timestep_embedding`, `noise`, and `context`
    (text-encoder states) or, with `text_encoder`, `tokens` to encode.
    """

    def __init__(self, diffusion_model, image_encoder=None, text_encoder=None, **kwargs):
        super().__init__(**kwargs)
        recompute_in_backward(diffusion_model)  # The same functions, keeping less for the backward pass.
        self.diffusion_model = diffusion_model
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def compile(self, optimizer, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        # The optimizer's slots are made here, not while `fit` traces the first step: a
        # tf.function that creates variables is traced a second time, and the first trace's
        # graph of the whole U-Net stays in memory.
        self.optimizer.build(self.trainable_variables)

    def make_train_function(self, force=False):
        if self._keras_functions_needed():
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = self._function_of_iterator(self.train_step)
        return self.train_function

    def make_test_function(self, force=False):
        if self._keras_functions_needed():
            return super().make_test_function(force)
        if self.test_function is None or force:
            self.test_function = self._function_of_iterator(self.test_step)
        return self.test_function

    def _keras_functions_needed(self):
        return self.run_eagerly or self.steps_per_execution != 1

    def _function_of_iterator(self, step):
        """`fit`'s or `evaluate`'s function of the data iterator: one batch read and `step` run,
        in one tf.function. Keras's own calls `step`'s tf.function from another that reads the
        batch, and TensorFlow then holds the U-Net's graph for both."""

        @tf.function(reduce_retracing=True)
        def step_on_iterator(iterator):
            data = iterator.get_next()
            # Every op of the step waits on the batch. Else, past the last batch of a dataset of
            # unknown length, counters that do not depend on it (the optimizer's iterations, a
            # mean's count) still advance, as they do under Keras's function.
            with tf.control_dependencies(tf.nest.flatten(data, expand_composites=True)):
                outputs = self.distribute_strategy.run(step, args=(data,))
            return reduce_per_replica(outputs, self.distribute_strategy, reduction="auto")

        def function(iterator):
            try:
                return step_on_iterator(iterator)
            except tf.errors.OutOfRangeError:  # Where Keras's returns an empty optional.
                raise StopIteration from None

        return function

    def noise_loss(self, data, training):
        """Mean squared error between the noise added to each row's latents and the U-Net's prediction of it."""
        latents = data["x"] if self.image_encoder is None else self.image_encoder(data["x"], training=False)
        latents = tf.cast(latents, "float32")
        noisy = data["signal"][:, None, None, None] * latents + data["noise_level"][:, None, None, None] * data["noise"]
        if self.text_encoder is None:
            context = data["context"]
        else:
            positions = tf.broadcast_to(tf.range(tf.shape(data["tokens"])[1])[None], tf.shape(data["tokens"]))
            context = self.text_encoder({"tokens": data["tokens"], "positions": positions}, training=training)
        predicted = self.diffusion_model(
            {"latent": noisy, "timestep_embedding": data["timestep_embedding"], "context": context}, training=training)
        return tf.reduce_mean(tf.square(tf.cast(predicted, "float32") - data["noise"]))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.noise_loss(data, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)  # Loss scaling under mixed_float16; else the loss.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result(), "step_loss": loss}

    def test_step(self, data):
        self.loss_tracker.update_state(self.noise_loss(data, training=False))
        return {"loss": self.loss_tracker.result()}


def training_optimizer(config):
    """AdamW with `config`'s learning rate, warmed up and then cosine-decayed, and its gradient
    accumulation."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, config.max_steps - config.warmup_steps), alpha=0.1,
        warmup_target=config.learning_rate, warmup_steps=config.warmup_steps)
    accumulation = config.gradient_accumulation
    return AdamW(schedule, weight_decay=1e-2, gradient_accumulation_steps=accumulation if accumulation > 1 else None)


class UpdatePlan:
    """Each training batch, as a function of the seed and the batch's number alone.

    Images are visited in a fresh random order each pass over the data; timesteps, noise and
    caption dropout are drawn per batch from its own generator.
    """

    def __init__(self, x, caption_ids, captions, schedule, config, contexts=None, tokens=None):
        self.x, self.caption_ids, self.captions = x, caption_ids, captions
        self.alphas = np.asarray(schedule.alphas_cumprod, dtype=np.float64)
        self.config = config
        self.contexts, self.tokens = contexts, tokens  # Per caption; the last one is "".
        self.latent_shape = (config.image_size // 8, config.image_size // 8, 4)

    def batch(self, number):
        config = self.config
        size = config.batch_size
        passes = np.random.default_rng([config.seed, 0, (number * size) // len(self.x)])
        order = passes.permutation(len(self.x))
        first = (number * size) % len(self.x)
        index = np.take(order, range(first, first + size), mode="wrap")  # A batch that runs past the end wraps.
        rng = np.random.default_rng([config.seed, 1, number])
        timesteps = rng.integers(0, len(self.alphas), size)
        caption = np.where(rng.random(size) < config.caption_dropout, len(self.captions) - 1, self.caption_ids[index])
        batch = {
            "x": self.x[index],
            "signal": np.sqrt(self.alphas[timesteps]).astype(np.float32),
            "noise_level": np.sqrt(1.0 - self.alphas[timesteps]).astype(np.float32),
            "timestep_embedding": np.concatenate([timestep_embedding(t, 1) for t in timesteps]),
            "noise": rng.standard_normal((size, *self.latent_shape), dtype=np.float32),
        }
        if self.tokens is not None:
            batch["tokens"] = self.tokens[caption]
        else:
            batch["context"] = self.contexts[caption]
        return batch

    def dataset(self, first, count):
        """Batches number `first` to `first + count - 1`, as a tf.data pipeline."""
        example = self.batch(0)
        signature = {key: tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype)) for key, value in example.items()}
        generator = lambda: (self.batch(number) for number in range(first, first + count))  # noqa: E731
        dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(count)).prefetch(2)


class Checkpoint(keras.callbacks.Callback):
    """Every `every` batches (an epoch here): the loss on the probe batches, the weights file,
    the loss history and curve, and a resume point (trainable weights, optimizer state,
    batches done), written in that order.

    A non-finite loss or weight stops training before anything is saved: the last good
    checkpoint and weights file stay as they were.
    """

    def __init__(self, out_dir, every, save_weights, history, probe_history, probe):
        super().__init__()
        self.out_dir, self.every, self.save_weights, self.probe = out_dir, every, save_weights, probe
        self.history = history  # Rows of {step, loss} per batch, kept across resumes.
        self.probe_history = probe_history  # Rows of {step, probe_loss} per checkpoint.
        self.stopped_on_nan = False

    def on_train_batch_end(self, batch, logs=None):
        self.history.append({"step": len(self.history) + 1, "loss": float(logs["step_loss"])})

    def on_epoch_end(self, epoch, logs=None):
        steps = (epoch + 1) * self.every
        finite = all(np.isfinite(row["loss"]) for row in self.history[-self.every:]) and all(
            np.isfinite(np.asarray(v)).all() for v in self.model.trainable_variables)
        if not finite:
            self.stopped_on_nan = True
            self.model.stop_training = True
            return
        self.probe_history.append({"step": steps, "probe_loss": self.probe()})
        self.save_weights()
        write_losses(self.out_dir, self.history, self.probe_history)
        save_checkpoint(os.path.join(self.out_dir, "checkpoints"), self.model, steps)


class SampleRow(keras.callbacks.Callback):
    """Every `every` batches, one image per fixed prompt and seed, so the adaptation shows."""

    def __init__(self, models, prompts, out_dir, every, checkpoint_every, sample_steps, seed):
        super().__init__()
        self.models, self.prompts, self.every, self.checkpoint_every = models, prompts, every, checkpoint_every
        self.sample_steps, self.seed = sample_steps, seed
        self.samples_dir = os.path.join(out_dir, "samples")
        self.progress_path = os.path.join(out_dir, "samples_progress.png")

    def draw(self, steps):
        models = self.models
        noise = np.stack([initial_noise(self.seed + i, models.image_size) for i in range(len(self.prompts))])
        contexts = encode_texts(models, [*self.prompts, ""])
        unconditional = np.repeat(contexts[-1:], len(self.prompts), axis=0)
        latents = sample_latents(models, noise, contexts[:-1], unconditional, self.sample_steps, guidance_scale=7.5)
        images = decode_to_uint8(models, latents).mean(axis=-1).round().astype(np.uint8)
        os.makedirs(self.samples_dir, exist_ok=True)
        # The row as one plain strip of images, which the progress figure reads back: it spans resumed runs.
        with atomic_path(os.path.join(self.samples_dir, f"step_{steps:06d}.png")) as tmp:
            Image.fromarray(np.concatenate(list(images), axis=1)).save(tmp)
        rows = {}
        for path in sorted(glob.glob(os.path.join(self.samples_dir, "step_*.png"))):
            with Image.open(path) as strip:
                rows[f"step {int(path[-10:-4])}"] = np.split(np.asarray(strip), len(self.prompts), axis=1)
        plots.save_labelled_grid(self.progress_path, rows, len(self.prompts),
                                 title="Fixed prompts and seeds, left to right: " + " | ".join(p[:30] for p in self.prompts))

    def on_epoch_end(self, epoch, logs=None):
        steps = (epoch + 1) * self.checkpoint_every
        if self.every and steps % self.every == 0 and not self.model.stop_training:
            self.draw(steps)


def save_checkpoint(directory, model, steps):
    """The trainable weights and the optimizer's state, with the batches done; older ones go."""
    os.makedirs(directory, exist_ok=True)
    arrays = {f"trainable_{i}": np.asarray(v) for i, v in enumerate(model.trainable_variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    path = os.path.join(directory, f"step_{steps:06d}.npz")
    with atomic_path(path) as tmp:
        np.savez(tmp, steps=np.int64(steps), **arrays)
    for old in glob.glob(os.path.join(directory, "step_*.npz")):
        if old != path:
            os.remove(old)


def latest_checkpoint(directory):
    """(batches done, path) of the newest checkpoint, or (0, None)."""
    found = [(int(m.group(1)), path) for path in glob.glob(os.path.join(directory, "step_*.npz"))
             if (m := _CHECKPOINT.search(path))]
    return max(found) if found else (0, None)


def restore_checkpoint(path, model):
    with np.load(path, allow_pickle=False) as saved:
        variables = list(model.trainable_variables)
        optimizer_variables = list(model.optimizer.variables)
        if sum(k.startswith("trainable_") for k in saved.files) != len(variables):
            raise UserError(f"{path} was written by a run that trained other weights; use a new --output_dir, "
                            "or the flags that run used")
        for i, variable in enumerate(variables):
            variable.assign(saved[f"trainable_{i}"])
        for i, variable in enumerate(optimizer_variables):
            variable.assign(saved[f"optimizer_{i}"])
        return int(saved["steps"])


def write_losses(out_dir, history, probe_history):
    """history.csv, probe_loss.csv and loss_curve.png (both on one plot)."""
    write_csv(os.path.join(out_dir, "history.csv"), [{"step": r["step"], "loss": f"{r['loss']:.6f}"} for r in history])
    write_csv(os.path.join(out_dir, "probe_loss.csv"), [{"step": r["step"], "probe_loss": f"{r['probe_loss']:.6f}"} for r in probe_history])
    losses = [r["loss"] for r in history]
    plots.save_curves(os.path.join(out_dir, "loss_curve.png"), [r["step"] for r in history],
                      {"loss, each batch": losses, "moving average (50 batches)": _moving_average(losses, 50),
                       f"loss on {PROBE_BATCHES} fixed probe batches": ([r["step"] for r in probe_history],
                                                                         [r["probe_loss"] for r in probe_history])},
                      "batch", "MSE on the noise", "Fine-tuning loss", log_y=True)


def _moving_average(values, window):
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    return [float((cumulative[i + 1] - cumulative[max(0, i + 1 - window)]) / min(window, i + 1)) for i in range(len(values))]


def sample_prompts(examples):
    """The fixed prompts of the sample rows: the first caption of each class, in order."""
    return list(dict.fromkeys(example.caption for example in examples))[:SAMPLE_PROMPTS]


def finetune(models, image_encoder, examples, out_dir, config=None, init_lora="", images=None, verbose=1):
    """Fine-tunes `models` (xray.weights.StableDiffusionModels) on `examples`; see the module docstring.

    `images` are the examples' pixels from `read_training_images`, when the caller has read
    them already (to check every file before building any network).

    Build the models (and compile nothing else) inside a `tf.distribute` strategy's scope to
    train under it. Run the same call again after an interruption: it resumes.
    """
    config = config or FinetuneConfig()
    if config.max_steps % config.checkpoint_every:
        raise UserError(f"--max_steps={config.max_steps} must be a multiple of --checkpoint_every={config.checkpoint_every}")
    if config.sample_every and config.sample_every % config.checkpoint_every:
        raise UserError(f"--sample_every={config.sample_every} must be a multiple of --checkpoint_every={config.checkpoint_every}")
    if models.image_size != config.image_size:
        raise ValueError(f"the networks are built for {models.image_size} px, the config asks for {config.image_size}")
    if images is None:
        images = read_training_images(examples, config.image_size)
    captions = list(dict.fromkeys(example.caption for example in examples)) + [""]
    caption_ids = np.array([captions.index(example.caption) for example in examples])

    if config.cache_latents:
        x = np.concatenate([np.asarray(image_encoder.predict_on_batch(to_model_range(images[i : i + 4])), dtype=np.float32)
                            for i in range(0, len(images), 4)])
        encoder_in_step = None
    else:
        x, encoder_in_step = to_model_range(images), image_encoder
        encoder_in_step.trainable = False
    adapters = {}
    if config.full_unet:
        models.text_encoder.trainable = False
    else:
        for network in (models.diffusion_model, models.text_encoder):
            for variable in network.weights:
                variable.trainable = False
        adapters = add_adapters("diffusion_model", models.diffusion_model, config.lora_rank,
                                ("attention", "feed_forward") if config.lora_feed_forward else ("attention",), config.seed)
        if config.lora_text_encoder:
            adapters.update(add_adapters("text_encoder", models.text_encoder, config.lora_rank, ("attention",), config.seed + 10_000))
        if init_lora:
            load_adapters_into(adapters, init_lora)
    text_in_step = models.text_encoder if config.lora_text_encoder else None
    if text_in_step is None:
        contexts, tokens = encode_texts(models, captions), None
    else:
        contexts, tokens = None, np.array([tokenize(models.tokenizer, caption) for caption in captions], dtype=np.int32)
    plan = UpdatePlan(x, caption_ids, captions, models.schedule, config, contexts, tokens)

    batches_per_update = config.gradient_accumulation
    optimizer = training_optimizer(config)
    if models.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = DiffusionFineTuner(models.diffusion_model, encoder_in_step, text_in_step)
    model.compile(optimizer=optimizer)

    os.makedirs(out_dir, exist_ok=True)
    weights_path = os.path.join(out_dir, FULL_UNET_FILE if config.full_unet else ADAPTERS_FILE)
    record = {"base_weights": models.weight_source, "image_size": config.image_size, "trained_on": len(examples),
              "targets": "full U-Net" if config.full_unet else
              ["attention"] + (["feed_forward"] if config.lora_feed_forward else []) + (["text_encoder"] if config.lora_text_encoder else [])}
    write_json(os.path.join(out_dir, "config.json"), dict(record, config=dataclasses.asdict(config), captions=captions[:-1]))

    batches_done, checkpoint = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    if checkpoint:
        batches_done = restore_checkpoint(checkpoint, model)
        if verbose:
            print(f"Resuming from {checkpoint}: {batches_done // batches_per_update} of {config.max_steps} updates done")
    history = [{"step": int(r["step"]), "loss": float(r["loss"])} for r in read_csv(os.path.join(out_dir, "history.csv"))]
    history = history[:batches_done]
    probe_history = [{"step": int(r["step"]), "probe_loss": float(r["probe_loss"])}
                     for r in read_csv(os.path.join(out_dir, "probe_loss.csv")) if int(r["step"]) <= batches_done]
    probe_batches = plan.dataset(PROBE_FIRST, PROBE_BATCHES)
    probe = lambda: float(model.evaluate(probe_batches, verbose=0, return_dict=True)["loss"])  # noqa: E731
    if batches_done == 0:
        probe_history = [{"step": 0, "probe_loss": probe()}]

    def save_weights():
        if config.full_unet:
            with atomic_path(weights_path) as tmp:
                models.diffusion_model.save_weights(tmp)
        else:
            save_adapters(weights_path, adapters, dict(record, steps=len(history) // batches_per_update))

    every = config.checkpoint_every * batches_per_update
    total = config.max_steps * batches_per_update
    checkpointer = Checkpoint(out_dir, every, save_weights, history, probe_history, probe)
    callbacks = [checkpointer, keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), update_freq="epoch")]
    if config.sample_every:
        sampler = SampleRow(models, sample_prompts(examples), out_dir, config.sample_every * batches_per_update, every,
                            config.sample_steps, config.seed)
        if batches_done == 0:
            sampler.draw(0)
        callbacks.append(sampler)
    start = time.perf_counter()
    if batches_done < total:
        model.fit(plan.dataset(batches_done, total - batches_done), epochs=total // every, steps_per_epoch=every,
                  initial_epoch=batches_done // every, callbacks=callbacks, shuffle=False, verbose=verbose)
    seconds = time.perf_counter() - start
    if checkpointer.stopped_on_nan:
        good, _ = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
        raise UserError(f"the loss or a weight became NaN or infinite before update {len(history) // batches_per_update}; "
                        f"the last good checkpoint ({good // batches_per_update} updates) and {os.path.basename(weights_path)} "
                        "are kept: lower --learning_rate and run again")
    return FinetuneResult(len(history) // batches_per_update, seconds, probe_history[0]["probe_loss"],
                          probe_history[-1]["probe_loss"], weights_path, adapters)


def write_merged(out_dir, models, image_encoder, adapters, weights, weights_path=""):
    """Writes the trained networks as a `--weights=local` folder: the base with the adapters
    ({module: layer}, from `FinetuneResult`) merged into its kernels, or the trained U-Net.

    The networks in memory are written, not built again: TensorFlow keeps a network it has
    run in graph mode after it is deleted, so a second set would add a second set's memory.
    The VAE encoder, the tokenizer and, for a converted checkpoint, its schedule go beside them.
    """
    networks = [models.text_encoder, models.diffusion_model, models.decoder, image_encoder]
    if any(weight.dtype in ("bfloat16", "float16") for network in networks for weight in network.weights):
        raise ValueError("write_merged needs networks loaded with frozen=False: frozen ones hold their weights rounded "
                         "to the compute dtype, and merged files would keep the rounding")
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
        write_json(os.path.join(out_dir, CONVERSION_FILE), {"source": models.weight_source, "scheduler": scheduler,
                                                             "numerics": "diffusers"})
    return out_dir

