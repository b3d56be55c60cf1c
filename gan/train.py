"""Trains the GAN on MNIST: `train(TrainConfig(...), output_dir)`. No flags in here.

Outputs under `output_dir` (see `OUTPUTS`); killed and called again with the same config,
training resumes after the last finished epoch and ends where an uninterrupted run would.
"""

import contextlib
import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from gan.callbacks import EpochCheckpoint, HistoryLogger, NanGuard, SampleGrid, latest_checkpoint, read_history
from gan.clusters import cluster_count, cluster_shares, pixel_clusters
from gan.config import ARCHITECTURES
from gan.model import GAN, build_networks
from genlab.distribute import is_chief, make_strategy
from genlab.errors import UserError
from genlab.files import atomic_path, check_output_path, write_json, write_text
from genlab.mnist import NUM_CLASSES, load_mnist
from genlab.noise import gaussian_noise
from genlab.optimizers import FusedAdam

OUTPUTS = {
    "generator": "generator.keras",
    "config": "config.json",
    "history": "history.csv",
    "loss_plot": "loss_curves.png",
    "d_output_plot": "discriminator_outputs.png",
    "samples": "samples",
    "gif": "samples.gif",
    "checkpoints": "checkpoints",
    "tensorboard": "tensorboard",
}

# Settings that fix the networks' shapes: a resumed run must match them.
_MODEL_FIELDS = ("architecture", "noise_dim", "conditional", "clusters", "num_train_images")


@dataclasses.dataclass
class TrainResult:
    generator: keras.Model
    history: list
    epochs_done: int
    output_dir: str
    seconds: float


def mnist_for_gan(config):
    """Training images scaled to [-1, 1] (tanh's range) with their labels."""
    (x_train, y_train), _ = load_mnist(config.mnist_path or None)
    if config.num_train_images:
        x_train, y_train = x_train[: config.num_train_images], y_train[: config.num_train_images]
    images = (x_train.astype("float32")[..., None] - 127.5) / 127.5
    return images, y_train.astype("int32")


def conditioning(config, images, labels):
    """What both networks are conditioned on: (per-image ids, their count, cluster shares).

    Conditional: the digit labels. Unconditional with clusters: cluster ids (the labels are
    dropped) and each cluster's share, which sampling follows. Otherwise: no conditioning.
    """
    if config.conditional:
        return labels, NUM_CLASSES, None
    if not config.clusters:
        return labels, None, None  # The labels ride along in the dataset, unused.
    count = cluster_count(config.clusters, len(images))
    clusters = pixel_clusters(images, count, config.seed)
    return clusters, count, cluster_shares(clusters, count)


def make_optimizers(config):
    """The discriminator's and the generator's Adam, in TensorFlow's fused kernel unless
    `config.fused_adam` is off."""
    adam = FusedAdam if config.fused_adam else keras.optimizers.Adam
    return adam(config.d_learning_rate, beta_1=config.beta_1), adam(config.g_learning_rate, beta_1=config.beta_1)


def fixed_noise(config, count=100):
    """The noise (and labels) the per-epoch grids use: the same for every epoch and run."""
    noise = gaussian_noise(config.seed, (count, config.noise_dim))
    labels = np.repeat(np.arange(NUM_CLASSES), count // NUM_CLASSES).astype("int32") if config.conditional else None
    return noise, labels


@contextlib.contextmanager
def without_grappler_remapper():
    """Grappler's remapper off while the GAN trains, as it was before afterwards.

    Where TensorFlow's oneDNN kernels are on (by default on CPUs with AVX-512 VNNI/BF16 or AMX), the
    remapper fuses the discriminator's Conv2D, BiasAdd and LeakyRelu and drops the BiasAdd that
    LeakyReluGrad still reads; it then fails on the train step's graph, logs an `E ...
    meta_optimizer.cc] remapper failed` line, and Grappler keeps the graph from before it. So the
    step runs as it would with the remapper off: turning it off changes nothing but the line.
    """
    options = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": options.get("remapping", True)})


def train(config, output_dir, verbose=1, extra_callbacks=(), files=None):
    """Trains (or resumes training of) the GAN described by `config`. Returns a `TrainResult`.

    Everything that can be checked is checked before `output_dir` is created, so a run that
    stops on bad input leaves the disk as it found it. `files` ({name: text}, e.g. the
    program's flags) are written into `output_dir` beside `config.json` once the run starts.
    """
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"unknown architecture {config.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    check_output_path(output_dir, "--output_dir")
    paths = {name: os.path.join(output_dir, rel) for name, rel in OUTPUTS.items()}
    _check_resumable(paths["config"], config)
    # First: multi-worker collectives can only be set up before TensorFlow runs anything.
    strategy = make_strategy(config.strategy, config.tpu)
    keras.utils.set_random_seed(config.seed)

    images, labels = mnist_for_gan(config)
    if len(images) < config.batch_size:
        raise UserError(f"--batch_size={config.batch_size} is larger than the {len(images)} training images")
    condition, num_classes, shares = conditioning(config, images, labels)
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, condition))
        .shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    if is_chief():  # Other workers read the chief's checkpoints (shared storage) and write nothing.
        os.makedirs(output_dir, exist_ok=True)
        for name, text in (files or {}).items():
            write_text(os.path.join(output_dir, name), text)

    with strategy.scope():
        generator, discriminator = build_networks(config.architecture, config.noise_dim, num_classes)
        gan = GAN(
            generator, discriminator, seed=config.seed, averaging_decay=config.averaging_decay, cluster_shares=shares
        )
        d_optimizer, g_optimizer = make_optimizers(config)
        gan.compile(
            d_optimizer=d_optimizer,
            g_optimizer=g_optimizer,
            real_label=config.real_label,
            jit_compile=config.jit_compile,
        )
    epochs_done, checkpoint = latest_checkpoint(paths["checkpoints"])
    if checkpoint:
        gan.load_weights(checkpoint)
        if verbose:
            print(f"Resuming from {checkpoint} ({epochs_done} of {config.epochs} epochs done)")
    if is_chief():
        write_json(paths["config"], dataclasses.asdict(config))

    nan_guard = NanGuard()
    callbacks = [nan_guard]
    if is_chief():
        noise, noise_labels = fixed_noise(config)
        # The checkpoint comes last: an epoch counts as done only after all its outputs are
        # written, so a run killed in between redoes the epoch and loses nothing.
        callbacks += [
            HistoryLogger(paths["history"], paths["loss_plot"], paths["d_output_plot"]),
            SampleGrid(noise, noise_labels, paths["samples"], paths["gif"]),
            keras.callbacks.TensorBoard(paths["tensorboard"]),
            EpochCheckpoint(paths["checkpoints"]),
        ]
    start = time.time()
    with without_grappler_remapper():
        gan.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=epochs_done,
            callbacks=callbacks + list(extra_callbacks),
            shuffle=False,
            verbose=verbose,
        )
    seconds = time.time() - start

    if nan_guard.diverged_at:
        epoch, batch, logs = nan_guard.diverged_at
        good_epochs, good = latest_checkpoint(paths["checkpoints"])
        raise UserError(
            f"training diverged: a loss became NaN/inf at epoch {epoch}, batch {batch} ({_format(logs)}); "
            f"the last good checkpoint ({good or 'none'}, {good_epochs} epochs) is kept; "
            "lower --g_learning_rate/--d_learning_rate and run the same command to resume"
        )
    if is_chief():
        with atomic_path(paths["generator"]) as tmp:
            gan.sampler.save(tmp)
    return TrainResult(gan.sampler, read_history(paths["history"]), config.epochs, output_dir, seconds)


def _check_resumable(config_path, config):
    if not os.path.exists(config_path):
        return
    with open(config_path) as f:
        previous = json.load(f)
    for field in _MODEL_FIELDS:
        if previous.get(field) != getattr(config, field):
            raise UserError(
                f"{config_path} is from a run with {field}={previous.get(field)!r}, not {getattr(config, field)!r}; "
                "use a new --output_dir, or the same settings to resume that run"
            )


def _format(logs):
    return ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items())
