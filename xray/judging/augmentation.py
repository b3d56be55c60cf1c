"""Do synthetic X-rays help a classifier trained on real ones? The augmentation test, with the
honest control.

The judge's classifier (same network and settings) trains in four arms, each tested on the same
real images:

- `real`: the real training images only;
- `real_plus_synthetic`: those and the synthetic set;
- `real_plus_duplicates`, the control: the real training images and as many again drawn from
  them (per class, as many as the synthetic set holds of that class), which the classifier's
  random shifts and zooms vary. Adding images this way costs nothing, so it is what synthetic
  images have to beat: a gain that duplicates also give is a gain from more steps, not from
  new images;
- `synthetic`: the synthetic images only (train on synthetic, test on real).

Each arm trains with several seeds; their spread says how large a difference must be to mean
anything. The verdict says synthetic images helped only where real + synthetic beats the control
in balanced accuracy (the mean of the per-class recalls, so a rare class counts as much as a
common one) by more than that spread.
"""

import numpy as np

from genlab import plots

ARMS = ("real", "real_plus_synthetic", "real_plus_duplicates", "synthetic")
ARM_LABELS = {
    "real": "real",
    "real_plus_synthetic": "real + synthetic",
    "real_plus_duplicates": "real + duplicates (control)",
    "synthetic": "synthetic only",
}
# Below this many test images in a class, recall moves in steps too coarse to see a few points' gain.
MIN_TEST_PER_CLASS = 30


def large_enough(y_test, num_classes):
    """Whether every class has MIN_TEST_PER_CLASS test images: the test's default."""
    return bool(np.bincount(y_test, minlength=num_classes).min() >= MIN_TEST_PER_CLASS)


def duplicate_indices(y_train, y_synthetic, seed):
    """Indices into the real training set: for each class, as many as the synthetic set holds of it,
    going through that class's real images in a seeded order, each once before any twice."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(int(max(y_train.max(), y_synthetic.max())) + 1):
        wanted = int((y_synthetic == label).sum())
        mine = np.flatnonzero(y_train == label)
        if wanted and not len(mine):
            raise ValueError(f"class {label} has synthetic images but no real training images to duplicate")
        if wanted:
            rounds = -(-wanted // len(mine))
            chosen.append(np.concatenate([rng.permutation(mine) for _ in range(rounds)])[:wanted])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)


def scores(predicted, y_test, num_classes):
    """Accuracy, balanced accuracy and recall per class (classes with test images)."""
    present = [c for c in range(num_classes) if (y_test == c).any()]
    recall = {c: float((predicted[y_test == c] == c).mean()) for c in present}
    return {
        "accuracy": float((predicted == y_test).mean()),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "recall": recall,
    }


def arm_data(arm, x_train, y_train, x_synthetic, y_synthetic, seed):
    if arm == "real":
        return x_train, y_train
    if arm == "synthetic":
        return x_synthetic, y_synthetic
    if arm == "real_plus_synthetic":
        return np.concatenate([x_train, x_synthetic]), np.concatenate([y_train, y_synthetic])
    extra = duplicate_indices(y_train, y_synthetic, seed)
    return np.concatenate([x_train, x_train[extra]]), np.concatenate([y_train, y_train[extra]])


def augmentation_test(fit_predict, x_train, y_train, x_test, y_test, x_synthetic, y_synthetic, class_names, seeds):
    """Trains every arm with each seed in `seeds` and returns the report (plain data, for summary.json).

    `fit_predict(images, labels, seed, test_images)` trains a fresh classifier and returns its
    predicted labels for `test_images`.
    """
    num_classes = len(class_names)
    runs = {arm: [] for arm in ARMS}
    for seed in seeds:
        for arm in ARMS:
            x, y = arm_data(arm, x_train, y_train, x_synthetic, y_synthetic, seed)
            runs[arm].append(scores(np.asarray(fit_predict(x, y, seed, x_test)), y_test, num_classes))
    report = {
        "seeds": list(seeds),
        "test_count": int(len(y_test)),
        "train_counts": {  # The control adds as many real images as the synthetic set holds.
            "real": len(y_train),
            "real_plus_synthetic": len(y_train) + len(y_synthetic),
            "real_plus_duplicates": len(y_train) + len(y_synthetic),
            "synthetic": len(y_synthetic),
        },
        "arms": {arm: summarize(runs[arm], class_names) for arm in ARMS},
    }
    report.update(verdict(report["arms"]))
    return report


def spread(values):
    """The seeds' standard deviation (n - 1: a few seeds understate it otherwise)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(runs, class_names):
    """Mean, spread and every seed's value of each score of one arm."""

    def stats(values):
        return {"mean": float(np.mean(values)), "spread": spread(values), "values": [float(v) for v in values]}

    return {
        "accuracy": stats([run["accuracy"] for run in runs]),
        "balanced_accuracy": stats([run["balanced_accuracy"] for run in runs]),
        "recall": {class_names[c]: stats([run["recall"][c] for run in runs]) for c in runs[0]["recall"]},
    }


def verdict(arms):
    """{"helped", "hurt", "margin", "spread", "verdict"}: real + synthetic against the control, in
    balanced accuracy, and whether it fell below real images alone."""
    mixed, control, real = (
        arms[a]["balanced_accuracy"] for a in ("real_plus_synthetic", "real_plus_duplicates", "real")
    )
    margin = mixed["mean"] - control["mean"]
    noise = max(mixed["spread"], control["spread"])
    loss = real["mean"] - mixed["mean"]
    hurt = loss > max(mixed["spread"], real["spread"]) and loss > 0
    helped = margin > noise and margin > 0
    if helped:
        text = (
            f"synthetic images helped: real + synthetic beat real + duplicates (the control) by {margin:.1%} balanced "
            f"accuracy, more than the seeds' spread ({noise:.1%})"
        )
    elif hurt:
        text = (
            f"synthetic images hurt: real + synthetic scored {loss:.1%} balanced accuracy below real images alone "
            f"(seeds' spread {max(mixed['spread'], real['spread']):.1%})"
        )
    else:
        text = (
            f"synthetic images did not help: real + synthetic was {margin:+.1%} balanced accuracy against real + "
            f"duplicates (the control), not more than the seeds' spread ({noise:.1%})"
        )
    return {"helped": helped, "hurt": hurt, "margin": margin, "spread": noise, "verdict": text}


def format_report(report):
    """The arms as terminal lines, then the verdict."""
    lines = [
        f"Augmentation test ({len(report['seeds'])} seeds, {report['test_count']} real test images; "
        "balanced accuracy, mean ± spread):"
    ]
    for arm in ARMS:
        scores_ = report["arms"][arm]
        balanced, accuracy = scores_["balanced_accuracy"], scores_["accuracy"]
        lines.append(
            f"  {ARM_LABELS[arm]:28s} {balanced['mean']:6.1%} ± {balanced['spread']:.1%}  "
            f"(accuracy {accuracy['mean']:.1%}, {report['train_counts'][arm]} training images)"
        )
    lines.append(f"Verdict: {report['verdict']}")
    return "\n".join(lines)


def save_figure(path, report):
    """augmentation.png: each arm's balanced accuracy and recall per class, with the seeds' spread."""
    arms = report["arms"]
    classes = list(arms["real"]["recall"])
    groups = ["balanced accuracy"] + [f"recall\n{name}" for name in classes]
    series = {}
    for arm in ARMS:
        figures = [arms[arm]["balanced_accuracy"]] + [arms[arm]["recall"][name] for name in classes]
        series[ARM_LABELS[arm]] = ([f["mean"] for f in figures], [f["spread"] for f in figures])
    plots.save_grouped_bars(path, groups, series, "on real test images", report["verdict"].split(":")[0].capitalize())
