"""Side effects of GAN training, kept out of `train_step`: grids, history, checkpoints, NaN guard."""

import glob
import math
import os
import re
import time

import keras
import numpy as np

from genlab import plots
from genlab.files import atomic_path, read_csv, write_csv
from genlab.images import to_uint8

_CHECKPOINT = re.compile(r"epoch_(\d+)\.weights\.h5$")


class SampleGrid(keras.callbacks.Callback):
    """After each epoch, draws the generator's images for the same fixed noise (and labels).

    Grids go to `samples_dir/epoch_NNNN.png`; at the end of training all of them (also those
    of an earlier, interrupted run) are animated into `gif_path`.
    """

    def __init__(self, fixed_noise, fixed_labels, samples_dir, gif_path):
        super().__init__()
        self.fixed_noise = fixed_noise
        self.fixed_labels = fixed_labels
        self.samples_dir = samples_dir
        self.gif_path = gif_path
        os.makedirs(samples_dir, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        images = self.model.generate(self.fixed_noise, self.fixed_labels).numpy()
        conditional = self.fixed_labels is not None
        plots.save_image_grid(
            os.path.join(self.samples_dir, f"epoch_{epoch + 1:04d}.png"),
            to_uint8(images),
            ncols=10,
            title=f"epoch {epoch + 1}" + (" (row = intended digit)" if conditional else ""),
            row_labels=range(10) if conditional else None,
        )

    def on_train_end(self, logs=None):
        frames = sorted(glob.glob(os.path.join(self.samples_dir, "epoch_*.png")))
        if frames:
            plots.save_gif(self.gif_path, frames)


class HistoryLogger(keras.callbacks.Callback):
    """Keeps `history.csv` (one row per finished epoch) and the loss and D-output plots.

    The CSV is rewritten whole and atomically each epoch; rows a resumed run repeats replace
    the old ones, so the file always holds one row per epoch the checkpoint has seen. Each row
    also has the epoch's wall-clock `seconds` (its callbacks excluded).
    """

    def __init__(self, csv_path, loss_plot_path, d_output_plot_path):
        super().__init__()
        self.csv_path = csv_path
        self.loss_plot_path = loss_plot_path
        self.d_output_plot_path = d_output_plot_path

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._epoch_start
        rows = [row for row in read_history(self.csv_path) if int(row["epoch"]) < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}, "seconds": seconds})
        write_csv(self.csv_path, rows)

        epochs = [int(row["epoch"]) for row in rows]

        def series(*names):
            return {name: [float(row[name]) for row in rows] for name in names if name in rows[-1]}

        plots.save_curves(self.loss_plot_path, epochs, series("d_loss", "g_loss"), "epoch", "loss", "GAN losses")
        plots.save_curves(
            self.d_output_plot_path,
            epochs,
            series("d_real", "d_fake"),
            "epoch",
            "mean D(x)",
            "Discriminator output on real and generated images",
        )


def read_history(csv_path):
    """The rows of a run's `history.csv`, one per finished epoch ([] before the first)."""
    return read_csv(csv_path)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves all weights (networks, optimizers, noise seed) after each finite epoch.

    One file per epoch, `epoch_NNNN.weights.h5`, written under a temporary name and renamed,
    so the newest complete file is always a valid restart point; older ones are deleted.
    An epoch with a non-finite loss is not saved: the last good checkpoint stays.
    """

    def __init__(self, checkpoint_dir):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        os.makedirs(checkpoint_dir, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        if not all(math.isfinite(float(v)) for v in (logs or {}).values()):
            return
        path = os.path.join(self.checkpoint_dir, f"epoch_{epoch + 1:04d}.weights.h5")
        with atomic_path(path) as tmp:
            self.model.save_weights(tmp)
        for old in glob.glob(os.path.join(self.checkpoint_dir, "epoch_*.weights.h5")):
            if old != path:
                os.remove(old)


def latest_checkpoint(checkpoint_dir):
    """Returns `(epochs_done, path)` of the newest checkpoint, or `(0, None)`."""
    found = []
    for path in glob.glob(os.path.join(checkpoint_dir, "epoch_*.weights.h5")):
        match = _CHECKPOINT.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found) if found else (0, None)


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose losses are not finite and remembers where."""

    def __init__(self):
        super().__init__()
        self.diverged_at = None  # (epoch, batch, logs) once a loss is NaN or infinite.
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if any(not np.isfinite(float(logs[k])) for k in ("d_loss", "g_loss") if k in logs):
            self.diverged_at = (self._epoch + 1, batch + 1, dict(logs))
            self.model.stop_training = True
