"""Judge a generator: generate, sort with the user's LeNet, measure with the reference judge, plot.

`judge_generator(generator_path, classifier_path, out_dir, count=...)` writes:

- `0/` .. `9/` (and `uncertain/`): the generated digits as PNGs, by the sorter's label;
- `predictions.csv`: per image, file, predicted label, confidence, the ten probabilities
  (and the intended label in conditional mode);
- `summary.json`: quality metrics for the generated digits and, as the reference line, for
  as many real MNIST training digits, both measured by the reference judge
  (`lenet.reference`) against the 10,000 test digits, so the two lines compare like with like;
- figures: `samples_by_class.png`, `class_histogram.png`, `confidence_histogram.png`, and
  in conditional mode `confusion_matrix.png` (intended vs predicted).
"""

import collections
import os

import numpy as np

from gan.sampling import load_generator, sample_digits
from genlab import plots
from genlab.batches import predict_in_one_shape
from genlab.files import check_output_path, write_json
from genlab.images import to_uint8
from genlab.mnist import NUM_CLASSES, load_mnist
from lenet import reference
from lenet.metrics import confusion_matrix, quality_report
from lenet.model import probabilities_and_features
from lenet.sorting import prepare_output_dir, publish, write_sorted_images
from lenet.train import load_classifier

BATCH_SIZE = 500  # Every prediction in this one batch shape (genlab.batches).


def judge_generator(
    generator_path,
    classifier_path,
    out_dir,
    count=1000,
    seed=0,
    min_confidence=0.0,
    overwrite=False,
    mnist_path="",
    verbose=1,
):
    """Returns the summary dict also written to `out_dir/summary.json`."""
    check_output_path(out_dir, "--output_dir")
    generator = load_generator(generator_path)
    sorter = probabilities_and_features(load_classifier(classifier_path))
    judge = reference.load_reference_judge()
    (x_train, y_train), (x_test, _) = load_mnist(mnist_path or None)
    staging = prepare_output_dir(out_dir, overwrite)

    images, intended = sample_digits(generator, count, seed=seed)
    images_uint8 = to_uint8(images)
    pixels = images_uint8.astype("float32")
    sorter_probabilities, _ = predict_in_one_shape(sorter, pixels, BATCH_SIZE, verbose=verbose)
    probabilities, features = predict_in_one_shape(judge, pixels, BATCH_SIZE)

    # Real digits at the generated set's count: FID depends on the sample size, so only equal
    # counts, judged by the same network against the same test digits, compare.
    _, test_features = predict_in_one_shape(judge, x_test[..., None].astype("float32"), BATCH_SIZE)
    real_index = np.random.default_rng(seed).choice(len(x_train), size=min(count, len(x_train)), replace=False)
    real_digits = x_train[real_index][..., None].astype("float32")
    real_probabilities, real_features = predict_in_one_shape(judge, real_digits, BATCH_SIZE)

    rows = write_sorted_images(staging, images_uint8, sorter_probabilities, min_confidence, intended)
    summary = {
        "generator": os.path.abspath(generator_path),
        "classifier": os.path.abspath(classifier_path),
        "judge": reference.describe(),
        "count": count,
        "seed": seed,
        "min_confidence": min_confidence,
        "conditional": intended is not None,
        "folder_counts": dict(sorted(collections.Counter(row["folder"] for row in rows).items())),
        "sorter_agrees_with_judge": float((sorter_probabilities.argmax(axis=1) == probabilities.argmax(axis=1)).mean()),
        "generated": quality_report(probabilities, features, test_features, intended),
        "real_mnist": quality_report(real_probabilities, real_features, test_features, y_train[real_index]),
    }
    write_json(os.path.join(staging, "summary.json"), summary)
    _save_figures(staging, images_uint8, sorter_probabilities, intended, summary)
    publish(staging, out_dir)
    return summary


def _save_figures(root, images_uint8, probabilities, intended, summary):
    predicted = probabilities.argmax(axis=1)
    by_class = {digit: images_uint8[predicted == digit][:10] for digit in range(NUM_CLASSES)}
    plots.save_labelled_grid(
        os.path.join(root, "samples_by_class.png"),
        by_class,
        ncols=10,
        title="Generated digits by LeNet's predicted label",
    )
    plots.save_bars(
        os.path.join(root, "class_histogram.png"),
        range(NUM_CLASSES),
        summary["generated"]["class_distribution"],
        "predicted digit (reference judge)",
        "share of images",
        "Class distribution (mode coverage)",
        reference=summary["real_mnist"]["class_distribution"],
    )
    plots.save_histogram(
        os.path.join(root, "confidence_histogram.png"),
        probabilities.max(axis=1),
        bins=np.linspace(0, 1, 21),
        xlabel="LeNet confidence (top probability)",
        title="How sure the sorting LeNet is about each generated digit",
    )
    if intended is not None:
        plots.save_matrix(
            os.path.join(root, "confusion_matrix.png"),
            confusion_matrix(intended, predicted),
            "predicted digit",
            "intended digit",
            f"Intended vs sorted: {(predicted == intended).mean():.1%} agree",
        )


def format_summary(summary):
    """The console table: generated digits against as many real MNIST digits, metric by metric."""
    generated, real = summary["generated"], summary["real_mnist"]
    confident = next(key for key in generated if key.startswith("fraction_confidence_ge_"))
    rows = [
        ("MNIST score (IS, max 10)", "mnist_score", "{:.2f}"),
        ("MNIST FID (judge's features, lower is better)", "mnist_fid", "{:.2f}"),
        ("class entropy, bits (max 3.32)", "class_entropy_bits", "{:.3f}"),
        ("mean confidence", "mean_confidence", "{:.3f}"),
        (f"share with confidence >= {confident.rsplit('_', 1)[-1]}", confident, "{:.1%}"),
    ]
    if "accuracy_vs_intended" in generated:
        rows.append(("accuracy vs intended label", "accuracy_vs_intended", "{:.1%}"))
    lines = [
        f"Measured by the {summary['judge']} on {summary['count']} digits each:",
        f"{'metric':46s} {'generated':>10s} {'real MNIST':>11s}",
    ]
    for title, key, fmt in rows:
        lines.append(f"{title:46s} {fmt.format(generated[key]):>10s} {fmt.format(real[key]):>11s}")
    lines.append(f"sorter agrees with the judge on {summary['sorter_agrees_with_judge']:.1%} of the generated digits")
    lines.append("images per folder: " + ", ".join(f"{k}: {v}" for k, v in summary["folder_counts"].items()))
    return "\n".join(lines)
