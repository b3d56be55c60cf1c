"""Judge a synthetic X-ray set against real X-rays, as LeNet-5 judges the generated digits.

`judge_dataset(real_dir, synthetic_dir, out_dir, config)` answers three questions:

- Does each class show what its prompt asked for? A classifier trained on the real images
  (a held-out split of each real class tests it) classifies the synthetic ones: accuracy
  against the intended class, per class and as a confusion matrix, and confidence.
- Do the images look real? FID and KID between real and synthetic on the classifier's
  features, overall and per class, beside the real floor: two halves of the real set at the
  same sample count. Both distances shrink with more samples, so only the floor says what
  "close" means at that count. And the share of synthetic images that lie outside every
  real class in those features, which no confidence can tell.
- Are they useful for training? Train on synthetic, test on real (TSTR): the same
  classifier trained on the synthetic set, tested on the real held-out split, beside the
  one trained on real images.
- Do they help a classifier trained on real images? The augmentation test
  (xray.judging.augmentation): real, real + synthetic, real + duplicated real (the control)
  and synthetic only, over several seeds, with a verdict against the control.

Every answer rests on the classifier: its accuracy in training is reported beside its
held-out accuracy, with a warning when they part.

It writes `classifier.keras` (+ `classifier.json`: its classes, settings and training accuracy),
`predictions.csv`, `summary.json`, `confusion_matrix.png`, `convincing.png` (per class:
real images, and the most and least convincing synthetic ones), `metrics.png`, and with the
augmentation test `augmentation.png`.
"""

import dataclasses
import hashlib
import os

import numpy as np

from genlab import plots
from genlab.batches import predict_in_one_shape
from genlab.errors import UserError
from genlab.files import atomic_path, check_output_path, load_model_file, read_json, write_csv, write_json
from genlab.images import to_uint8
from genlab.metrics import frechet_distance, kernel_distance
from xray.config import JudgeConfig
from xray.data.image_folder import class_folders, read_grayscale_images
from xray.judging import augmentation

CLASSIFIER_FILE = "classifier.keras"
FEATURES_LAYER = "features"
FEATURE_DIMS = 128  # FID fits a covariance of this size: with fewer images than this it is singular.
GRID_IMAGES = 4  # Images per row of convincing.png.
# A synthetic image is outside the real set when it lies farther from every real class's centre
# than this percentile of that class's own real images do.
OUTSIDE_PERCENTILE = 99.0
TRAINING_GAP_WARNING = 0.10  # Training accuracy this far above held-out accuracy: the judge's figures are unreliable.
# keras.applications constructor and whether it normalises [0, 255] inputs itself.
_APPLICATIONS = {
    "mobilenet_v3_small": ("MobileNetV3Small", True),
    "efficientnet_v2_b0": ("EfficientNetV2B0", True),
    "densenet121": ("DenseNet121", False),
}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def match_classes(real, synthetic):
    """The classifier's classes (every real class), once each synthetic class has a real one."""
    if not set(real) & set(synthetic):
        raise UserError(
            f"--real and --synthetic share no class (real: {', '.join(sorted(real))}; "
            f"synthetic: {', '.join(sorted(synthetic))}); name their class folders alike"
        )
    missing = sorted(set(synthetic) - set(real))
    if missing:
        raise UserError(
            f"synthetic class {missing[0]!r} has no folder under --real (real classes: "
            f"{', '.join(sorted(real))}); add real images of it or move it out of --synthetic"
        )
    thin = sorted(name for name, paths in real.items() if len(paths) < 2)
    if thin:
        raise UserError(
            f"real class {thin[0]!r} has one image; the classifier needs at least two per class "
            "(one to train on, one to test)"
        )
    return sorted(real)


def split_real(real, class_names, holdout_fraction, seed):
    """(items, held_out): every real (path, label), class by class in file order, and a
    boolean mask of the held-out ones (a fixed share of each class).

    Files are held out by a hash of their name, so a file's side does not change when
    others are added, and a saved classifier is tested on the same split when reused.
    """
    items, held_out = [], []
    for label, name in enumerate(class_names):
        ranked = sorted(real[name], key=lambda p: hashlib.sha256(f"{seed}\x00{os.path.basename(p)}".encode()).digest())
        count = min(len(ranked) - 1, max(1, round(holdout_fraction * len(ranked))))
        chosen = set(ranked[:count])
        items += [(path, label) for path in real[name]]
        held_out += [path in chosen for path in real[name]]
    return items, np.array(held_out)


def build_classifier(num_classes, config):
    """A Keras classifier of (size, size, 1) images in [0, 1], with a named feature layer."""
    import keras

    keras.utils.set_random_seed(config.seed)
    layers = keras.layers
    inputs = keras.Input((config.image_size, config.image_size, 1), name="xray")
    # Radiographs vary in framing, not in orientation (the heart is on the left): small shifts and
    # zooms only. What they uncover is filled black, like the film outside the body, not reflected.
    x = layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=config.seed)(inputs)
    x = layers.RandomZoom(0.1, fill_mode="constant", seed=config.seed)(x)
    if config.backbone == "small_cnn":
        x = layers.Rescaling(2.0, offset=-1.0)(x)
        # No batch normalization: a judge must score an image the same whatever else is in its batch.
        # Strided convolutions halve the size until the last one sees the whole image.
        size, filters = config.image_size, 16
        while True:
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", kernel_initializer="he_normal")(
                x
            )
            size, filters = -(-size // 2), min(2 * filters, 128)
            if size <= 4:
                break
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.Concatenate()([x, x, x])  # ImageNet backbones take RGB.
        backbone, takes_0_255 = _backbone(config)
        if takes_0_255:
            x = layers.Rescaling(255.0)(x)
        else:
            x = layers.Normalization(mean=_IMAGENET_MEAN, variance=[s * s for s in _IMAGENET_STD])(x)
        backbone.trainable = False  # Transfer learning: the ImageNet features stay; the head learns.
        x = backbone(x, training=False)
    features = layers.Dense(FEATURE_DIMS, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, seed=config.seed)(features)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"xray_judge_{config.backbone}")


def check_backbone_weights(config):
    """A one-line `UserError` for a --backbone_weights file that is not there (before anything is written)."""
    weights = config.backbone_weights
    if config.backbone in _APPLICATIONS and weights not in ("", "imagenet") and not os.path.isfile(weights):
        raise UserError(
            f"--backbone_weights={weights}: no such file; pass Keras's ImageNet weight file "
            f"for {config.backbone} without its top (include_top=False), or 'imagenet' to download it"
        )


def _backbone(config):
    import keras

    constructor_name, takes_0_255 = _APPLICATIONS[config.backbone]
    check_backbone_weights(config)
    weights = config.backbone_weights or None
    kwargs = dict(
        include_top=False, weights=weights, pooling="avg", input_shape=(config.image_size, config.image_size, 3)
    )
    if takes_0_255:
        kwargs["include_preprocessing"] = True
    try:
        return getattr(keras.applications, constructor_name)(**kwargs), takes_0_255
    except Exception as error:  # A failed download or a file for another network: many error types.
        raise UserError(
            f"cannot load {config.backbone}'s weights {weights!r} ({type(error).__name__}: {error}); "
            "offline, pass --backbone_weights=FILE with the ImageNet weights without the top"
        ) from None


def train_classifier(model, images, labels, config, num_classes, verbose=1):
    """Fits `model`; returns it and its accuracy in the last epoch, as training reported it.

    Classes are weighted by inverse frequency, since real X-ray sets are rarely balanced.
    """
    import keras

    counts = np.bincount(labels, minlength=num_classes)
    class_weight = {c: len(labels) / (num_classes * counts[c]) for c in range(num_classes) if counts[c]}
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        images,
        labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        class_weight=class_weight,
        verbose=verbose,
    )
    return model, float(history.history["accuracy"][-1])


def predict(model, images, batch_size):
    """(features, probabilities) of images under `model`."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])
    features, probabilities = predict_in_one_shape(probe, images, batch_size)
    return features.astype(np.float64), probabilities.astype(np.float64)


def record_path(classifier_path):
    """The JSON record beside a saved classifier: `classifier.keras` -> `classifier.json`."""
    return os.path.splitext(classifier_path)[0] + ".json"


def load_classifier(path, class_names):
    """A saved judge classifier, its settings and its training accuracy (None in older records),
    checked against this run's real classes."""
    how = "train one by running genlab-xray-judge without --classifier"
    record_file = record_path(path)
    if not os.path.isfile(record_file):
        raise UserError(f"--classifier={path} has no {os.path.basename(record_file)} beside it; {how}")
    record = read_json(record_file, how)
    if record.get("classes") != class_names:
        raise UserError(
            f"--classifier={path} was trained on classes {record.get('classes')}, --real has {class_names}; {how}"
        )
    return (
        load_model_file(path, "judge classifier", how),
        JudgeConfig(**record["config"]),
        record.get("training_accuracy"),
    )


def outside_real(real_features, real_labels, synthetic_features, synthetic_labels, class_names):
    """Share of synthetic images (overall and per intended class) that lie outside the real set:
    farther, in the classifier's features, from every real class's centre than
    `OUTSIDE_PERCENTILE` of that class's real images lie from it.

    A classifier's confidence cannot say this: it must pick a class even for an image that is
    no X-ray at all. By construction about 1% of real images fall outside their own class.
    Each feature is scaled by its spread over the real images first: a unit that barely moves
    on real X-rays and fires on an image says most about it, and plain distances would let the
    large units drown it.
    """
    spread = real_features.std(axis=0)
    spread = spread + 1e-3 * spread.mean() + 1e-12  # Units that never fire on real images count most, not infinitely.
    real_features, synthetic_features = real_features / spread, synthetic_features / spread
    labels = range(len(class_names))
    centres = np.stack([real_features[real_labels == c].mean(axis=0) for c in labels])
    own = np.linalg.norm(real_features - centres[real_labels], axis=1)
    radii = np.array([np.percentile(own[real_labels == c], OUTSIDE_PERCENTILE) for c in labels])
    to_centres = np.linalg.norm(synthetic_features[:, None, :] - centres[None], axis=2)
    outside = (to_centres > radii).all(axis=1)
    result = {"overall": float(outside.mean())}
    result.update(
        {
            name: float(outside[synthetic_labels == c].mean())
            for c, name in enumerate(class_names)
            if (synthetic_labels == c).any()
        }
    )
    return result


def distances(real_features, real_labels, synthetic_features, synthetic_labels, class_names, seed):
    """FID and KID against one real half, beside the real floor (the other half), per class and overall.

    Every comparison in a row uses the same count: the smallest of the two real halves and
    the synthetic set. The synthetic sample is drawn the way the real halves are, so two
    identical sets give exactly 0. FID is marked unreliable where the count is not above the
    feature size (its covariances are then singular); KID is averaged over subsets of half
    the count, and their spread says how far it can be trusted at that count.
    """
    order = np.random.default_rng(seed).permutation(len(real_features))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    synthetic_order = np.random.default_rng(seed).permutation(len(synthetic_features))

    def compare(a, b, s):
        count = min(len(a), len(b), len(s))
        if count < 2:
            return None
        real_a, real_b, synthetic = real_features[a[:count]], real_features[b[:count]], synthetic_features[s[:count]]
        subset = max(2, count // 2)
        kid, kid_std = kernel_distance(synthetic, real_a, subset_size=subset, seed=seed)
        kid_floor, kid_floor_std = kernel_distance(real_b, real_a, subset_size=subset, seed=seed)
        return {
            "count": int(count),
            "fid": frechet_distance(synthetic, real_a),
            "fid_real_floor": frechet_distance(real_b, real_a),
            "fid_reliable": bool(count > real_features.shape[1]),
            "kid": kid,
            "kid_std": kid_std,
            "kid_real_floor": kid_floor,
            "kid_real_floor_std": kid_floor_std,
        }

    result = {"overall": compare(half_a, half_b, synthetic_order)}
    for label, name in enumerate(class_names):
        if (synthetic_labels == label).any():
            result[name] = compare(
                half_a[real_labels[half_a] == label],
                half_b[real_labels[half_b] == label],
                synthetic_order[synthetic_labels[synthetic_order] == label],
            )
    return result


def judge_dataset(real_dir, synthetic_dir, out_dir, config=None, classifier_path="", verbose=1, real_test_dir=""):
    """Judges `synthetic_dir` against `real_dir`; writes the files above into `out_dir`; returns the summary.

    `real_test_dir` (class folders, e.g. a public set's test split) tests the augmentation test's
    arms, which then train on every image of `real_dir`; without it they train and test on the
    judge's own split of `real_dir`."""
    config = config or JudgeConfig()
    check_output_path(out_dir, "--output_dir")
    real = class_folders(real_dir, "--real")
    synthetic = class_folders(synthetic_dir, "--synthetic")
    class_names = match_classes(real, synthetic)
    test_items = _test_items(real_test_dir, class_names)
    classifier = None
    if classifier_path:
        classifier, saved, training_accuracy = load_classifier(classifier_path, class_names)
        config = dataclasses.replace(
            saved,
            tstr=config.tstr,
            augmentation=config.augmentation,
            augmentation_seeds=config.augmentation_seeds,
            seed=saved.seed,
        )
    else:
        check_backbone_weights(config)
    real_items, held_out = split_real(real, class_names, config.holdout_fraction, config.seed)
    synthetic_items = [(path, class_names.index(name)) for name in sorted(synthetic) for path in synthetic[name]]
    # Every image is read before anything is written: an unreadable file stops the run with nothing left behind.
    if verbose:
        print(
            f"Reading {len(real_items)} real, {len(synthetic_items)} synthetic and {len(test_items)} real test images "
            f"at {config.image_size} px"
        )
    real_x, real_y = _read(real_items, config.image_size)
    x_syn, y_syn = _read(synthetic_items, config.image_size)
    x_test, y_test = _read(test_items, config.image_size)
    x_train, y_train, x_held, y_held = real_x[~held_out], real_y[~held_out], real_x[held_out], real_y[held_out]
    os.makedirs(out_dir, exist_ok=True)

    if classifier is None:
        if verbose:
            print(f"Training the judge ({config.backbone}) on {len(x_train)} real images")
        classifier, training_accuracy = train_classifier(
            build_classifier(len(class_names), config), x_train, y_train, config, len(class_names), verbose
        )
        with atomic_path(os.path.join(out_dir, CLASSIFIER_FILE)) as tmp:
            classifier.save(tmp)
        write_json(
            record_path(os.path.join(out_dir, CLASSIFIER_FILE)),
            {"classes": class_names, "config": dataclasses.asdict(config), "training_accuracy": training_accuracy},
        )
    real_features, real_probabilities = predict(classifier, real_x, config.batch_size)
    syn_features, syn_probabilities = predict(classifier, x_syn, config.batch_size)
    held_accuracy = float((real_probabilities[held_out].argmax(1) == y_held).mean())

    summary = {
        "real_dir": os.path.abspath(real_dir),
        "synthetic_dir": os.path.abspath(synthetic_dir),
        "classes": class_names,
        "real_classes_not_generated": sorted(set(class_names) - set(synthetic)),
        "classifier": {
            "backbone": config.backbone,
            "image_size": config.image_size,
            "train_count": len(x_train),
            "held_out_count": len(x_held),
            "training_accuracy": training_accuracy,
            "held_out_accuracy": held_accuracy,
            "file": os.path.abspath(classifier_path or os.path.join(out_dir, CLASSIFIER_FILE)),
        },
        "synthetic": _class_report(syn_probabilities, y_syn, class_names),
        "outside_real": outside_real(real_features, real_y, syn_features, y_syn, class_names),
        "distances": distances(real_features, real_y, syn_features, y_syn, class_names, config.seed),
    }
    summary["warnings"] = classifier_warnings(summary["classifier"])
    if config.tstr:
        if verbose:
            print(f"Train on synthetic, test on real: training the same classifier on {len(x_syn)} synthetic images")
        tstr_model, _ = train_classifier(
            build_classifier(len(class_names), config), x_syn, y_syn, config, len(class_names), verbose
        )
        tstr_accuracy = float((predict(tstr_model, x_held, config.batch_size)[1].argmax(1) == y_held).mean())
        summary["tstr"] = {
            "train_on_synthetic_accuracy": tstr_accuracy,
            "train_on_real_accuracy": held_accuracy,
            "synthetic_train_count": len(x_syn),
            "real_train_count": len(x_train),
            "test_count": len(x_held),
        }

    if test_items:  # The arms train on all of --real and are tested on --real_test.
        train_and_test = (real_x, real_y, x_test, y_test)
    else:
        train_and_test = (x_train, y_train, x_held, y_held)
    if config.augmentation == "on" or (
        config.augmentation == "auto" and augmentation.large_enough(train_and_test[3], len(class_names))
    ):
        summary["augmentation"] = run_augmentation_test(config, *train_and_test, x_syn, y_syn, class_names, verbose)
        augmentation.save_figure(os.path.join(out_dir, "augmentation.png"), summary["augmentation"])

    _write_predictions(out_dir, synthetic_dir, synthetic_items, syn_probabilities, class_names)
    _write_figures(out_dir, summary, x_syn, y_syn, syn_probabilities, real_x, real_y, class_names)
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def _test_items(real_test_dir, class_names):
    """[(path, label)] of --real_test's images (none without it); its classes must be --real's."""
    if not real_test_dir:
        return []
    test = class_folders(real_test_dir, "--real_test")
    unknown = sorted(set(test) - set(class_names))
    if unknown:
        raise UserError(
            f"--real_test class {unknown[0]!r} has no folder under --real (real classes: {', '.join(class_names)})"
        )
    return [(path, class_names.index(name)) for name in sorted(test) for path in test[name]]


def run_augmentation_test(config, x_train, y_train, x_test, y_test, x_syn, y_syn, class_names, verbose):
    """The augmentation test with the judge's classifier: a fresh one per arm and seed."""
    seeds = [config.seed + i for i in range(config.augmentation_seeds)]
    if verbose:
        print(
            f"Augmentation test: {len(augmentation.ARMS)} ways of training x {len(seeds)} seeds, "
            f"tested on {len(y_test)} real images"
        )

    report = augmentation.augmentation_test(
        classifier_fit_predict(config, len(class_names), verbose),
        x_train,
        y_train,
        x_test,
        y_test,
        x_syn,
        y_syn,
        class_names,
        seeds,
    )
    if verbose:
        print()
    return report


def classifier_fit_predict(config, num_classes, verbose=0):
    """The augmentation test's `fit_predict`: a fresh judge classifier trained with the seed given,
    returning its predicted classes; a dot per classifier when `verbose`."""

    def fit_predict(images, labels, seed, test_images):
        arm_config = dataclasses.replace(config, seed=seed)
        model, _ = train_classifier(
            build_classifier(num_classes, arm_config), images, labels, arm_config, num_classes, verbose=0
        )
        predicted = predict(model, test_images, config.batch_size)[1].argmax(1)
        if verbose:
            print(".", end="", flush=True)
        return predicted

    return fit_predict


def classifier_warnings(classifier):
    """One line per reason to doubt the judge's own figures."""
    training, held_out = classifier["training_accuracy"], classifier["held_out_accuracy"]
    if training is not None and training - held_out > TRAINING_GAP_WARNING:
        return [
            f"the judge's classifier scored {training:.1%} in training but {held_out:.1%} on held-out real images, "
            "so its figures are unreliable; try more --epochs, more real images, or another --backbone"
        ]
    return []


def _read(items, size):
    return read_grayscale_images([path for path, _ in items], size), np.array(
        [label for _, label in items], dtype=np.int64
    )


def _class_report(probabilities, intended, class_names):
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    correct = predicted == intended
    num = len(class_names)
    matrix = np.zeros((num, num), dtype=int)
    np.add.at(matrix, (intended, predicted), 1)
    present = [c for c in range(num) if (intended == c).any()]
    return {
        "count": int(len(intended)),
        "accuracy_vs_intended": float(correct.mean()),
        "accuracy_per_class": {class_names[c]: float(correct[intended == c].mean()) for c in present},
        "mean_confidence": float(confidence.mean()),
        "confidence_per_class": {class_names[c]: float(confidence[intended == c].mean()) for c in present},
        "intended_share": {name: float((intended == c).mean()) for c, name in enumerate(class_names)},
        "predicted_share": {name: float((predicted == c).mean()) for c, name in enumerate(class_names)},
        "confusion_matrix": matrix.tolist(),
    }


def _write_predictions(out_dir, synthetic_dir, items, probabilities, class_names):
    rows = []
    for (path, label), p in zip(items, probabilities):
        row = {
            "file": os.path.relpath(path, synthetic_dir).replace(os.sep, "/"),
            "intended_class": class_names[label],
            "predicted_class": class_names[int(p.argmax())],
            "confidence": f"{p.max():.4f}",
        }
        row.update({f"p_{name}": f"{value:.4f}" for name, value in zip(class_names, p)})
        rows.append(row)
    write_csv(os.path.join(out_dir, "predictions.csv"), rows)


def _write_figures(out_dir, summary, x_syn, y_syn, probabilities, real_x, real_y, class_names):
    synthetic = summary["synthetic"]
    plots.save_matrix(
        os.path.join(out_dir, "confusion_matrix.png"),
        synthetic["confusion_matrix"],
        "predicted class",
        "intended class",
        f"Synthetic images through the judge: {synthetic['accuracy_vs_intended']:.1%} as intended",
        labels=class_names,
    )
    rows = {}
    for label, name in enumerate(class_names):
        mine = np.flatnonzero(y_syn == label)
        if not len(mine):
            continue
        by_belief = mine[np.argsort(-probabilities[mine, label], kind="stable")]
        rows[f"{name}\nreal"] = to_uint8(real_x[real_y == label][:GRID_IMAGES], (0.0, 1.0))
        rows[f"{name}\nmost convincing"] = to_uint8(x_syn[by_belief[:GRID_IMAGES]], (0.0, 1.0))
        rows[f"{name}\nleast convincing"] = to_uint8(x_syn[by_belief[::-1][:GRID_IMAGES]], (0.0, 1.0))
    plots.save_labelled_grid(
        os.path.join(out_dir, "convincing.png"),
        rows,
        GRID_IMAGES,
        title="Real images, and the synthetic ones the judge finds most and least like their class",
    )
    plots.save_table(
        os.path.join(out_dir, "metrics.png"),
        *metric_table(summary),
        title="Synthetic against real (lower FID/KID is better; the real floor is the best reachable)",
    )


def metric_table(summary):
    """(columns, rows of strings): overall and per class, the figures with their real floors."""
    columns = [
        "class",
        "images",
        "accuracy",
        "confidence",
        "outside real",
        "FID",
        "FID real floor",
        "KID",
        "KID real floor",
    ]
    synthetic, distance, outside = summary["synthetic"], summary["distances"], summary["outside_real"]
    rows = []
    for name in ["overall"] + [n for n in summary["classes"] if n in distance]:
        d = distance[name] or {}
        if name == "overall":
            figures = [synthetic["count"], synthetic["accuracy_vs_intended"], synthetic["mean_confidence"]]
        else:
            count = round(synthetic["intended_share"][name] * synthetic["count"])
            figures = [count, synthetic["accuracy_per_class"][name], synthetic["confidence_per_class"][name]]
        cells = [_cell(v) for v in figures] + [f"{outside[name]:.1%}"]
        if d:
            mark = "" if d["fid_reliable"] else "*"
            cells += [
                _cell(d["fid"]) + mark,
                _cell(d["fid_real_floor"]) + mark,
                f"{d['kid']:.3g} ± {d['kid_std']:.2g}",
                f"{d['kid_real_floor']:.3g} ± {d['kid_real_floor_std']:.2g}",
            ]
        else:
            cells += ["-"] * 4
        rows.append([name] + cells)
    return columns, rows


def _cell(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def format_summary(summary):
    """The figures as a text table for the terminal."""
    columns, rows = metric_table(summary)
    cells = [columns] + rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in cells]
    classifier = summary["classifier"]
    training = classifier["training_accuracy"]
    lines.append(
        f"Judge: {classifier['backbone']}, {classifier['held_out_accuracy']:.1%} on {classifier['held_out_count']} "
        "held-out real images" + ("." if training is None else f" ({training:.1%} in training).")
    )
    count = (summary["distances"]["overall"] or {}).get("count")
    lines.append(
        f"FID/KID compare {count} synthetic with {count} real images; the floor compares two real halves of that size."
    )
    lines.append(
        f"Outside real: share of images farther from every real class than {OUTSIDE_PERCENTILE:g}% of its real "
        "images are (about 1% for real images)."
    )
    if any(d and not d["fid_reliable"] for d in summary["distances"].values()):
        lines.append(
            f"* No more images than the {FEATURE_DIMS} feature dimensions: FID is unreliable there; "
            "trust KID and its spread."
        )
    if "tstr" in summary:
        tstr = summary["tstr"]
        lines.append(
            f"Train on synthetic, test on real: {tstr['train_on_synthetic_accuracy']:.1%} "
            f"(train on real: {tstr['train_on_real_accuracy']:.1%}), on {tstr['test_count']} held-out real images."
        )
    if "augmentation" in summary:
        lines.append(augmentation.format_report(summary["augmentation"]))
    if summary["real_classes_not_generated"]:
        lines.append(f"Real classes with no synthetic images: {', '.join(summary['real_classes_not_generated'])}.")
    lines += [f"Warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines)
