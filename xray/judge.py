"""Judge a synthetic X-ray set against real X-rays, as LeNet-5 judges the generated digits.

`judge_dataset(real_dir, synthetic_dir, out_dir, config)` answers three questions:

- Does each class show what its prompt asked for? A classifier trained on the real images
  (a held-out split of each real class tests it) classifies the synthetic ones: accuracy
  against the intended class, per class and as a confusion matrix, and confidence.
- Do the images look real? FID and KID between real and synthetic on the classifier's
  features, overall and per class, beside the real floor: two halves of the real set at the
  same sample count. Both distances shrink with more samples, so only the floor says what
  "close" means at that count.
- Are they useful for training? Train on synthetic, test on real (TSTR): the same
  classifier trained on the synthetic set, tested on the real held-out split, beside the
  one trained on real images.

It writes `classifier.keras` (+ `classifier.json`: its classes, input size and settings),
`predictions.csv`, `summary.json`, `confusion_matrix.png`, `convincing.png` (per class:
real images, and the most and least convincing synthetic ones) and `metrics.png`.
"""

import dataclasses
import hashlib
import os

import numpy as np

from genlab import plots
from genlab.errors import UserError
from genlab.files import atomic_path, check_output_path, load_model_file, read_json, write_csv, write_json
from genlab.images import to_uint8
from genlab.metrics import frechet_distance, kernel_distance
from xray.config import JudgeConfig
from xray.image_folder import class_folders, read_grayscale_images

CLASSIFIER_FILE = "classifier.keras"
FEATURES_LAYER = "features"
GRID_IMAGES = 4  # Images per row of convincing.png.
# keras.applications constructor and whether it normalises [0, 255] inputs itself.
_APPLICATIONS = {"mobilenet_v3_small": ("MobileNetV3Small", True), "efficientnet_v2_b0": ("EfficientNetV2B0", True),
                 "densenet121": ("DenseNet121", False)}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def match_classes(real, synthetic):
    """The classifier's classes (every real class), once each synthetic class has a real one."""
    if not set(real) & set(synthetic):
        raise UserError(f"--real and --synthetic share no class (real: {', '.join(sorted(real))}; "
                        f"synthetic: {', '.join(sorted(synthetic))}); name their class folders alike")
    missing = sorted(set(synthetic) - set(real))
    if missing:
        raise UserError(f"synthetic class {missing[0]!r} has no folder under --real (real classes: "
                        f"{', '.join(sorted(real))}); add real images of it or move it out of --synthetic")
    thin = sorted(name for name, paths in real.items() if len(paths) < 2)
    if thin:
        raise UserError(f"real class {thin[0]!r} has one image; the classifier needs at least two per class "
                        "(one to train on, one to test)")
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
    # Radiographs vary in framing, not in orientation (the heart is on the left): small shifts and zooms only.
    x = layers.RandomTranslation(0.05, 0.05, seed=config.seed)(inputs)
    x = layers.RandomZoom(0.1, seed=config.seed)(x)
    if config.backbone == "small_cnn":
        x = layers.Rescaling(2.0, offset=-1.0)(x)
        for filters in (32, 64, 128, 256):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            # Small sets give few steps: moving statistics that adapt fast, or inference lags training.
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
            x = layers.MaxPooling2D()(x)
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
    features = layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, seed=config.seed)(features)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"xray_judge_{config.backbone}")


def _backbone(config):
    import keras

    constructor_name, takes_0_255 = _APPLICATIONS[config.backbone]
    weights = config.backbone_weights or None
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise UserError(f"--backbone_weights={weights}: no such file; pass Keras's ImageNet weight file "
                        f"for {config.backbone} without its top (include_top=False), or 'imagenet' to download it")
    kwargs = dict(include_top=False, weights=weights, pooling="avg", input_shape=(config.image_size, config.image_size, 3))
    if takes_0_255:
        kwargs["include_preprocessing"] = True
    try:
        return getattr(keras.applications, constructor_name)(**kwargs), takes_0_255
    except Exception as error:  # A failed download or a file for another network: many error types.
        raise UserError(f"cannot load {config.backbone}'s weights {weights!r} ({type(error).__name__}: {error}); "
                        "offline, pass --backbone_weights=FILE with the ImageNet weights without the top") from None


def train_classifier(model, images, labels, config, num_classes, verbose=1):
    """Fits `model`; classes are weighted by inverse frequency, since real X-ray sets are rarely balanced."""
    import keras

    counts = np.bincount(labels, minlength=num_classes)
    class_weight = {c: len(labels) / (num_classes * counts[c]) for c in range(num_classes) if counts[c]}
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images, labels, batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
              class_weight=class_weight, verbose=verbose)
    return model


def predict(model, images, batch_size):
    """(features, probabilities) of images under `model`."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])
    features, probabilities = probe.predict(images, batch_size=batch_size, verbose=0)
    return features.astype(np.float64), probabilities.astype(np.float64)


def record_path(classifier_path):
    """The JSON record beside a saved classifier: `classifier.keras` -> `classifier.json`."""
    return os.path.splitext(classifier_path)[0] + ".json"


def load_classifier(path, class_names):
    """A saved judge classifier and its settings, checked against this run's real classes."""
    how = "train one by running genlab-xray-judge without --classifier"
    record_file = record_path(path)
    if not os.path.isfile(record_file):
        raise UserError(f"--classifier={path} has no {os.path.basename(record_file)} beside it; {how}")
    record = read_json(record_file, how)
    if record.get("classes") != class_names:
        raise UserError(f"--classifier={path} was trained on classes {record.get('classes')}, --real has "
                        f"{class_names}; {how}")
    return load_model_file(path, "judge classifier", how), JudgeConfig(**record["config"])


def distances(real_features, real_labels, synthetic_features, synthetic_labels, class_names, seed):
    """FID and KID against one real half, beside the real floor (the other half), per class and overall.

    Every comparison in a row uses the same count: the smallest of the two real halves and
    the synthetic set. The synthetic sample is drawn the way the real halves are, so two
    identical sets give exactly 0.
    """
    order = np.random.default_rng(seed).permutation(len(real_features))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    synthetic_order = np.random.default_rng(seed).permutation(len(synthetic_features))

    def compare(a, b, s):
        count = min(len(a), len(b), len(s))
        if count < 2:
            return None
        real_a, real_b, synthetic = real_features[a[:count]], real_features[b[:count]], synthetic_features[s[:count]]
        kid, kid_std = kernel_distance(synthetic, real_a, seed=seed)
        return {"count": int(count), "fid": frechet_distance(synthetic, real_a), "fid_real_floor": frechet_distance(real_b, real_a),
                "kid": kid, "kid_std": kid_std, "kid_real_floor": kernel_distance(real_b, real_a, seed=seed)[0]}

    result = {"overall": compare(half_a, half_b, synthetic_order)}
    for label, name in enumerate(class_names):
        if (synthetic_labels == label).any():
            result[name] = compare(half_a[real_labels[half_a] == label], half_b[real_labels[half_b] == label],
                                   synthetic_order[synthetic_labels[synthetic_order] == label])
    return result


def judge_dataset(real_dir, synthetic_dir, out_dir, config=None, classifier_path="", verbose=1):
    """Judges `synthetic_dir` against `real_dir`; writes the files above into `out_dir`; returns the summary."""
    config = config or JudgeConfig()
    check_output_path(out_dir, "--output_dir")
    real = class_folders(real_dir, "--real")
    synthetic = class_folders(synthetic_dir, "--synthetic")
    class_names = match_classes(real, synthetic)
    classifier = None
    if classifier_path:
        classifier, saved = load_classifier(classifier_path, class_names)
        config = dataclasses.replace(saved, tstr=config.tstr, seed=saved.seed)
    real_items, held_out = split_real(real, class_names, config.holdout_fraction, config.seed)
    synthetic_items = [(path, class_names.index(name)) for name in sorted(synthetic) for path in synthetic[name]]
    # Every image is read before anything is written: an unreadable file stops the run with nothing left behind.
    if verbose:
        print(f"Reading {len(real_items)} real and {len(synthetic_items)} synthetic images at {config.image_size} px")
    real_x, real_y = _read(real_items, config.image_size)
    x_syn, y_syn = _read(synthetic_items, config.image_size)
    x_train, y_train, x_held, y_held = real_x[~held_out], real_y[~held_out], real_x[held_out], real_y[held_out]
    os.makedirs(out_dir, exist_ok=True)

    if classifier is None:
        if verbose:
            print(f"Training the judge ({config.backbone}) on {len(x_train)} real images")
        classifier = train_classifier(build_classifier(len(class_names), config), x_train, y_train, config,
                                      len(class_names), verbose)
        with atomic_path(os.path.join(out_dir, CLASSIFIER_FILE)) as tmp:
            classifier.save(tmp)
        write_json(record_path(os.path.join(out_dir, CLASSIFIER_FILE)),
                   {"classes": class_names, "config": dataclasses.asdict(config)})
    real_features, real_probabilities = predict(classifier, real_x, config.batch_size)
    syn_features, syn_probabilities = predict(classifier, x_syn, config.batch_size)
    held_accuracy = float((real_probabilities[held_out].argmax(1) == y_held).mean())

    summary = {
        "real_dir": os.path.abspath(real_dir), "synthetic_dir": os.path.abspath(synthetic_dir), "classes": class_names,
        "real_classes_not_generated": sorted(set(class_names) - set(synthetic)),
        "classifier": {"backbone": config.backbone, "image_size": config.image_size, "train_count": len(x_train),
                       "held_out_count": len(x_held), "held_out_accuracy": held_accuracy,
                       "file": os.path.abspath(classifier_path or os.path.join(out_dir, CLASSIFIER_FILE))},
        "synthetic": _class_report(syn_probabilities, y_syn, class_names),
        "distances": distances(real_features, real_y, syn_features, y_syn, class_names, config.seed),
    }
    if config.tstr:
        if verbose:
            print(f"Train on synthetic, test on real: training the same classifier on {len(x_syn)} synthetic images")
        tstr_model = train_classifier(build_classifier(len(class_names), config), x_syn, y_syn, config, len(class_names), verbose)
        tstr_accuracy = float((predict(tstr_model, x_held, config.batch_size)[1].argmax(1) == y_held).mean())
        summary["tstr"] = {"train_on_synthetic_accuracy": tstr_accuracy, "train_on_real_accuracy": held_accuracy,
                           "synthetic_train_count": len(x_syn), "real_train_count": len(x_train), "test_count": len(x_held)}

    _write_predictions(out_dir, synthetic_dir, synthetic_items, syn_probabilities, class_names)
    _write_figures(out_dir, summary, x_syn, y_syn, syn_probabilities, real_x, real_y, class_names)
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def _read(items, size):
    return read_grayscale_images([path for path, _ in items], size), np.array([label for _, label in items], dtype=np.int64)


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
        row = {"file": os.path.relpath(path, synthetic_dir).replace(os.sep, "/"), "intended_class": class_names[label],
               "predicted_class": class_names[int(p.argmax())], "confidence": f"{p.max():.4f}"}
        row.update({f"p_{name}": f"{value:.4f}" for name, value in zip(class_names, p)})
        rows.append(row)
    write_csv(os.path.join(out_dir, "predictions.csv"), rows)


def _write_figures(out_dir, summary, x_syn, y_syn, probabilities, real_x, real_y, class_names):
    synthetic = summary["synthetic"]
    plots.save_matrix(os.path.join(out_dir, "confusion_matrix.png"), synthetic["confusion_matrix"], "predicted class",
                      "intended class", f"Synthetic images through the judge: {synthetic['accuracy_vs_intended']:.1%} as intended",
                      labels=class_names)
    rows = {}
    for label, name in enumerate(class_names):
        mine = np.flatnonzero(y_syn == label)
        if not len(mine):
            continue
        by_belief = mine[np.argsort(-probabilities[mine, label], kind="stable")]
        rows[f"{name}\nreal"] = to_uint8(real_x[real_y == label][:GRID_IMAGES], (0.0, 1.0))
        rows[f"{name}\nmost convincing"] = to_uint8(x_syn[by_belief[:GRID_IMAGES]], (0.0, 1.0))
        rows[f"{name}\nleast convincing"] = to_uint8(x_syn[by_belief[::-1][:GRID_IMAGES]], (0.0, 1.0))
    plots.save_labelled_grid(os.path.join(out_dir, "convincing.png"), rows, GRID_IMAGES,
                             title="Real images, and the synthetic ones the judge finds most and least like their class")
    plots.save_table(os.path.join(out_dir, "metrics.png"), *metric_table(summary),
                     title="Synthetic against real (lower FID/KID is better; the real floor is the best reachable)")


def metric_table(summary):
    """(columns, rows of strings): overall and per class, the figures with their real floors."""
    columns = ["class", "images", "accuracy", "confidence", "FID", "FID real floor", "KID", "KID real floor"]
    synthetic, distance = summary["synthetic"], summary["distances"]
    rows = []
    for name in ["overall"] + [n for n in summary["classes"] if n in distance]:
        d = distance[name] or {}
        if name == "overall":
            figures = [synthetic["count"], synthetic["accuracy_vs_intended"], synthetic["mean_confidence"]]
        else:
            count = round(synthetic["intended_share"][name] * synthetic["count"])
            figures = [count, synthetic["accuracy_per_class"][name], synthetic["confidence_per_class"][name]]
        figures += [d.get("fid"), d.get("fid_real_floor"), d.get("kid"), d.get("kid_real_floor")]
        rows.append([name] + [f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in figures])
    return columns, rows


def format_summary(summary):
    """The figures as a text table for the terminal."""
    columns, rows = metric_table(summary)
    cells = [columns] + rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in cells]
    classifier = summary["classifier"]
    lines.append(f"Judge: {classifier['backbone']}, {classifier['held_out_accuracy']:.1%} on {classifier['held_out_count']} "
                 "held-out real images.")
    count = (summary["distances"]["overall"] or {}).get("count")
    lines.append(f"FID/KID compare {count} synthetic with {count} real images; the floor compares two real halves of that size.")
    if "tstr" in summary:
        tstr = summary["tstr"]
        lines.append(f"Train on synthetic, test on real: {tstr['train_on_synthetic_accuracy']:.1%} "
                     f"(train on real: {tstr['train_on_real_accuracy']:.1%}), on {tstr['test_count']} held-out real images.")
    if summary["real_classes_not_generated"]:
        lines.append(f"Real classes with no synthetic images: {', '.join(summary['real_classes_not_generated'])}.")
    return "\n".join(lines)
