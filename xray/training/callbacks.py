"""Fine-tuning's callbacks: checkpoints with the probe loss, and rows of samples from fixed prompts."""

import os

import keras
import numpy as np
from PIL import Image

from genlab import plots
from genlab.files import atomic_path, write_csv
from xray.sd.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents
from xray.training.checkpoints import save_checkpoint, step_files
from xray.training.plan import PROBE_BATCHES


class Checkpoint(keras.callbacks.Callback):
    """Every `every` batches (an epoch here): the loss on the probe batches, the weights file,
    the loss history and curve, and a resume point (trainable weights, optimizer state,
    batches done), written in that order.

    A non-finite loss or weight stops training before anything is saved: the last good
    checkpoint and weights file stay as they were.
    """

    def __init__(self, out_dir, every, save_weights, history, probe_history, probe, keep=1):
        super().__init__()
        self.out_dir, self.every, self.save_weights, self.probe = out_dir, every, save_weights, probe
        self.keep = keep  # Resume points kept, the newest.
        self.history = history  # Rows of {step, loss, gradient_norm} per batch, kept across resumes.
        self.probe_history = probe_history  # Rows of {step, probe_loss} per checkpoint.
        self.stopped_on_nan = False

    def on_train_batch_end(self, batch, logs=None):
        self.history.append(
            {
                "step": len(self.history) + 1,
                "loss": float(logs["step_loss"]),
                "gradient_norm": float(logs["gradient_norm"]),
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        steps = (epoch + 1) * self.every
        finite = all(np.isfinite(row["loss"]) for row in self.history[-self.every :]) and all(
            np.isfinite(np.asarray(v)).all() for v in self.model.trainable_variables
        )
        if not finite:
            self.stopped_on_nan = True
            self.model.stop_training = True
            return
        self.probe_history.append({"step": steps, "probe_loss": self.probe()})
        self.save_weights()
        write_losses(self.out_dir, self.history, self.probe_history)
        save_checkpoint(os.path.join(self.out_dir, "checkpoints"), self.model, steps, self.keep)


class SampleRow(keras.callbacks.Callback):
    """Every `every` batches, one image per fixed prompt and seed, so the adaptation shows; drawn
    with the weights' moving average when training keeps one."""

    def __init__(self, models, prompts, seeds, out_dir, every, checkpoint_every, sample_steps):
        super().__init__()
        self.models, self.prompts, self.seeds = models, prompts, seeds
        self.every, self.checkpoint_every, self.sample_steps = every, checkpoint_every, sample_steps
        self.samples_dir = os.path.join(out_dir, "samples")
        self.progress_path = os.path.join(out_dir, "samples_progress.png")

    def draw(self, steps):
        models = self.models
        noise = np.stack([initial_noise(seed, models.image_size) for seed in self.seeds])
        contexts = encode_texts(models, [*self.prompts, ""])
        unconditional = np.repeat(contexts[-1:], len(self.prompts), axis=0)
        latents = sample_latents(models, noise, contexts[:-1], unconditional, self.sample_steps, guidance_scale=7.5)
        images = decode_to_uint8(models, latents).mean(axis=-1).round().astype(np.uint8)
        os.makedirs(self.samples_dir, exist_ok=True)
        # The row as one plain strip of images, which the progress figure reads back: it spans resumed runs.
        with atomic_path(os.path.join(self.samples_dir, f"step_{steps:06d}.png")) as tmp:
            Image.fromarray(np.concatenate(list(images), axis=1)).save(tmp)
        rows = {}
        for step, path in step_files(self.samples_dir, "png"):
            with Image.open(path) as strip:
                rows[f"step {step}"] = np.split(np.asarray(strip), len(self.prompts), axis=1)
        plots.save_labelled_grid(
            self.progress_path,
            rows,
            len(self.prompts),
            title="Fixed prompts and seeds, left to right: " + " | ".join(p[:30] for p in self.prompts),
        )

    def on_epoch_end(self, epoch, logs=None):
        steps = (epoch + 1) * self.checkpoint_every
        if self.every and steps % self.every == 0 and not self.model.stop_training:
            with self.model.averaged_weights():
                self.draw(steps)


def write_losses(out_dir, history, probe_history):
    """history.csv, probe_loss.csv and loss_curve.png (both on one plot)."""
    write_csv(
        os.path.join(out_dir, "history.csv"),
        [
            {"step": r["step"], "loss": f"{r['loss']:.6f}", "gradient_norm": f"{r['gradient_norm']:.6g}"}
            for r in history
        ],
    )
    write_csv(
        os.path.join(out_dir, "probe_loss.csv"),
        [{"step": r["step"], "probe_loss": f"{r['probe_loss']:.6f}"} for r in probe_history],
    )
    losses = [r["loss"] for r in history]
    plots.save_curves(
        os.path.join(out_dir, "loss_curve.png"),
        [r["step"] for r in history],
        {
            "loss, each batch": losses,
            "moving average (50 batches)": _moving_average(losses, 50),
            f"loss on {PROBE_BATCHES} fixed probe batches": (
                [r["step"] for r in probe_history],
                [r["probe_loss"] for r in probe_history],
            ),
        },
        "batch",
        "MSE on the noise",
        "Fine-tuning loss",
        log_y=True,
    )


def _moving_average(values, window):
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    return [
        float((cumulative[i + 1] - cumulative[max(0, i + 1 - window)]) / min(window, i + 1)) for i in range(len(values))
    ]
