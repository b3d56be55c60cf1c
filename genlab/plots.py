"""Figures shared by the labs: image grids, curves, bar charts, GIFs. All saved atomically."""

import math

import matplotlib

matplotlib.use("Agg")  # No display on servers, CI or Colab's kernel process.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genlab.files import atomic_path  # noqa: E402


def tile_images(images, ncols):
    """Tiles (N, H, W[, 1]) uint8 images into one (rows*H, ncols*W) array, row-major."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    n, h, w = images.shape
    nrows = math.ceil(n / ncols)
    canvas = np.zeros((nrows * h, ncols * w), dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def save_image_grid(path, images, ncols, title=None, row_labels=None, cell_inches=0.6):
    """Saves uint8 images as a titled grid; `row_labels` names each row on the left."""
    tiled = tile_images(images, ncols)
    nrows = math.ceil(len(images) / ncols)
    fig, ax = plt.subplots(figsize=(max(3.0, ncols * cell_inches + 0.6), nrows * cell_inches + 0.6))
    ax.imshow(tiled, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    h = tiled.shape[0] // nrows
    if row_labels is not None:
        ax.set_yticks([(r + 0.5) * h for r in range(nrows)], [str(label) for label in row_labels])
        ax.tick_params(length=0)
        ax.set_xticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    else:
        ax.axis("off")
    if title:
        ax.set_title(title)
    _save(fig, path)


def save_labelled_grid(path, images_by_label, ncols, title=None):
    """One row per label (e.g. class name), up to `ncols` images each, label on the left.

    `images_by_label` maps label -> uint8 images of any size (rows need not be full).
    """
    labels = list(images_by_label)
    fig, axes = plt.subplots(
        len(labels), ncols, figsize=(max(5.0, ncols * 1.4 + 1.2), len(labels) * 1.4 + 0.8), squeeze=False
    )
    for r, label in enumerate(labels):
        images = images_by_label[label]
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(np.squeeze(images[c]), cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(str(label), rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def save_curves(path, x, series, xlabel, ylabel, title, log_y=False):
    """Plots each named series on one axis; `series` maps a name to its values over `x`, or
    to its own `(x, values)` pair."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in series.items():
        xs, ys = values if isinstance(values, tuple) else (x, values)
        ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both" if log_y else "major")
    ax.legend()
    _save(fig, path)


def save_bars(path, labels, values, xlabel, ylabel, title, reference=None):
    """A bar chart; `reference` (same length) is drawn as outlined bars, e.g. real data."""
    fig, ax = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(labels))
    ax.bar(positions, values, color="tab:blue", label="generated")
    if reference is not None:
        ax.bar(positions, reference, fill=False, edgecolor="black", label="real MNIST")
        ax.legend()
    ax.set_xticks(positions, [str(label) for label in labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)


def save_grouped_bars(path, groups, series, ylabel, title):
    """Bars grouped along x by `groups`, one bar per series {name: (values, errors)} with its errors as
    whiskers, e.g. each training arm's score per class with its spread over seeds."""
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(groups)), 4))
    positions = np.arange(len(groups))
    width = 0.8 / len(series)
    for i, (name, (values, errors)) in enumerate(series.items()):
        ax.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(positions, [str(group) for group in groups])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    _save(fig, path)


def save_histogram(path, values, bins, xlabel, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(values, bins=bins, color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.set_title(title)
    _save(fig, path)


def save_matrix(path, matrix, xlabel, ylabel, title, labels=None):
    """A confusion matrix as a heat map with the counts written in each cell; `labels` name
    the rows and columns (default: their numbers)."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6, 5.5) if labels is None else (max(6, 1.2 * len(labels) + 2.5),) * 2)
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax)
    n_rows, n_cols = matrix.shape
    if labels is None:
        ax.set_xticks(range(n_cols))
        ax.set_yticks(range(n_rows))
    else:
        ax.set_xticks(range(n_cols), labels, rotation=45, ha="right")
        ax.set_yticks(range(n_rows), labels)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n_rows):
        for j in range(n_cols):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)


def save_table(path, columns, rows, title):
    """A table as an image; `rows` are lists of strings, one per column."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(columns)), 0.4 * len(rows) + 1.2))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=columns, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def save_gif(path, frame_paths, seconds_per_frame=0.5):
    """Animates saved PNG frames (e.g. one sample grid per epoch); the last frame lingers."""
    frames = [Image.open(p).convert("P", palette=Image.ADAPTIVE) for p in frame_paths]
    durations = [int(seconds_per_frame * 1000)] * len(frames)
    durations[-1] *= 4
    with atomic_path(path) as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def _save(fig, path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
