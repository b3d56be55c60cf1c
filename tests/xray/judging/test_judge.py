"""The X-ray judge on folders with known answers: shapes stand in for X-ray classes."""

import json
import os
import shutil

import numpy as np
import pytest

from genlab.files import read_csv
from xray.config import JudgeConfig
from xray.judging.judge import (
    build_classifier,
    classifier_warnings,
    distances,
    format_summary,
    judge_dataset,
    outside_real,
    predict,
)

from helpers.image_folders import DIGIT_NAMES, SHAPES, make_digits_folder, make_noise_folder, make_shapes_folder
from helpers.programs import run_program

SMALL = ["--image_size=32", "--epochs=60", "--batch_size=16"]
TRAINS = pytest.mark.slow  # Trains the judge's classifier (twice with TSTR).


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("real"), per_class=40, seed=0)


@pytest.fixture(scope="module")
def judged_copy(tmp_path_factory, real):
    """The program end to end on a synthetic set identical to the real one; its classifier is reused below."""
    synthetic = tmp_path_factory.mktemp("synthetic") / "copy"
    shutil.copytree(real, synthetic)
    out = tmp_path_factory.mktemp("judge") / "out"
    result = run_program(
        "scripts.judge_xrays", [f"--real={real}", f"--synthetic={synthetic}", f"--output_dir={out}", *SMALL]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@TRAINS
def test_identical_sets_score_like_real_images(judged_copy, real):
    out, stdout = judged_copy
    assert sorted(os.listdir(out)) == [
        "classifier.json",
        "classifier.keras",
        "confusion_matrix.png",
        "convincing.png",
        "metrics.png",
        "predictions.csv",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classifier"]["held_out_accuracy"] >= 0.9  # Shapes are easy: the judge must have learnt them.
    # The synthetic images are the real ones, so the judge scores them exactly as it scores the real set.
    import keras

    from xray.data.image_folder import read_grayscale_images

    classifier = keras.saving.load_model(out / "classifier.keras")
    paths = [
        os.path.join(real, shape, name) for shape in SHAPES for name in sorted(os.listdir(os.path.join(real, shape)))
    ]
    labels = np.repeat(np.arange(len(SHAPES)), 40)
    real_accuracy = (classifier.predict(read_grayscale_images(paths, 32), verbose=0).argmax(1) == labels).mean()
    assert summary["synthetic"]["accuracy_vs_intended"] == pytest.approx(real_accuracy)
    for name in ["overall", *SHAPES]:
        distance = summary["distances"][name]
        assert abs(distance["fid"]) < 1e-4 * distance["fid_real_floor"]
    assert summary["tstr"]["train_on_synthetic_accuracy"] >= 0.9
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 120 and rows[0]["file"] == "circle/circle_000.png" and rows[0]["intended_class"] == "circle"
    assert sum(float(rows[0][f"p_{shape}"]) for shape in SHAPES) == pytest.approx(1.0, abs=1e-3)
    assert "FID real floor" in stdout and "Train on synthetic, test on real" in stdout
    assert "augmentation" not in summary  # auto: 8 held-out images a class are too few for it.


@TRAINS
def test_the_augmentation_test_trains_on_all_real_images_and_tests_on_real_test(tmp_path, real):
    """Its plumbing, on a budget too small to learn from (its verdicts: tests/xray/judging/test_augmentation)."""
    real_test = make_shapes_folder(tmp_path / "real_test", per_class=10, seed=5)
    synthetic = make_shapes_folder(tmp_path / "synthetic", per_class=20, seed=6)
    out = tmp_path / "out"
    args = [f"--real={real}", f"--synthetic={synthetic}", f"--output_dir={out}", f"--real_test={real_test}"]
    tiny = ["--image_size=32", "--epochs=2", "--batch_size=32", "--notstr", "--augmentation=on"]
    result = run_program("scripts.judge_xrays", [*args, *tiny, "--augmentation_seeds=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    test = json.loads((out / "summary.json").read_text())["augmentation"]
    assert test["test_count"] == 30 and test["seeds"] == [0, 1]
    assert test["train_counts"] == {  # All 120 real images: --real_test tests them.
        "real": 120,
        "real_plus_synthetic": 180,
        "real_plus_duplicates": 180,
        "synthetic": 60,
    }
    assert all(len(arm["balanced_accuracy"]["values"]) == 2 for arm in test["arms"].values())
    assert sorted(test["arms"]["real"]["recall"]) == sorted(SHAPES)
    assert (out / "augmentation.png").is_file() and "augmentation.png" in result.stdout
    assert "Augmentation test (2 seeds, 30 real test images" in result.stdout
    assert f"Verdict: {test['verdict']}" in result.stdout


@TRAINS
def test_images_filed_under_random_classes_score_at_chance(tmp_path, judged_copy, real):
    out, _ = judged_copy
    rng = np.random.default_rng(7)
    synthetic = make_shapes_folder(
        tmp_path / "shuffled", per_class=40, seed=1, label_of=lambda *_: SHAPES[rng.integers(3)]
    )
    summary = judge_dataset(
        real, synthetic, str(tmp_path / "out"), JudgeConfig(), classifier_path=str(out / "classifier.keras"), verbose=0
    )
    assert 0.15 < summary["synthetic"]["accuracy_vs_intended"] < 0.55  # Chance is 1/3.
    assert summary["tstr"]["train_on_synthetic_accuracy"] < 0.6 < summary["tstr"]["train_on_real_accuracy"]
    assert not os.path.exists(tmp_path / "out" / "classifier.keras")  # Reused, not retrained.


@TRAINS
def test_noise_is_far_above_the_real_floor(tmp_path, judged_copy, real):
    out, _ = judged_copy
    synthetic = make_noise_folder(tmp_path / "noise", per_class=40)
    summary = judge_dataset(
        real,
        synthetic,
        str(tmp_path / "out"),
        JudgeConfig(tstr=False),
        classifier_path=str(out / "classifier.keras"),
        verbose=0,
    )
    overall = summary["distances"]["overall"]
    assert overall["fid"] > 5 * overall["fid_real_floor"]
    # KID on 60 images a side is noisy (see its spread): above the floor and its spread, no more is sure.
    assert overall["kid"] > overall["kid_real_floor"] + overall["kid_real_floor_std"]
    assert "tstr" not in summary


@pytest.mark.slow  # Builds a keras.applications network.
def test_a_backbone_with_local_weights(tmp_path, real):
    import keras

    weights = tmp_path / "mobilenet_notop.weights.h5"
    keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(weights)
    config = JudgeConfig(
        image_size=32, backbone="mobilenet_v3_small", backbone_weights=str(weights), epochs=1, tstr=False
    )
    summary = judge_dataset(real, real, str(tmp_path / "out"), config, verbose=0)
    assert summary["classifier"]["backbone"] == "mobilenet_v3_small"
    assert json.loads((tmp_path / "out" / "classifier.json").read_text())["config"]["backbone"] == "mobilenet_v3_small"


def _bad_folders(tmp_path, case):
    real = make_shapes_folder(tmp_path / "real", per_class=3)
    synthetic = tmp_path / "synthetic"
    if case == "no common class":
        make_noise_folder(synthetic, 2, classes=("knee",))
    elif case == "empty class":
        make_shapes_folder(synthetic, 2)
        (synthetic / "hexagon").mkdir()
    elif case == "unreadable image":
        make_shapes_folder(synthetic, 2)
        (synthetic / "circle" / "broken.png").write_bytes(b"\x89PNG broken")
    elif case == "class the real folder lacks":
        make_noise_folder(synthetic, 2, classes=("circle", "hexagon"))
    else:
        make_shapes_folder(synthetic, 2)
    return real, synthetic


@pytest.mark.parametrize(
    "case, message",
    [
        ("no common class", "--real and --synthetic share no class"),
        ("empty class", "hexagon (--synthetic) holds no PNG or JPEG images"),
        ("unreadable image", "broken.png is not a readable PNG or JPEG image"),
        ("class the real folder lacks", "synthetic class 'hexagon' has no folder under --real"),
        ("missing backbone weights", "--backbone_weights=/missing.weights.h5: no such file"),
        ("a test class the real folder lacks", "--real_test class 'hexagon' has no folder under --real"),
    ],
)
def test_bad_folders_get_one_line_and_leave_nothing(tmp_path, case, message):
    real, synthetic = _bad_folders(tmp_path, case)
    out = tmp_path / "out"
    extra = (
        ["--backbone=mobilenet_v3_small", "--backbone_weights=/missing.weights.h5"]
        if case == "missing backbone weights"
        else []
    )
    if case == "a test class the real folder lacks":
        extra = [f"--real_test={make_noise_folder(tmp_path / 'test', 2, classes=('circle', 'hexagon'))}"]
    result = run_program(
        "scripts.judge_xrays", [f"--real={real}", f"--synthetic={synthetic}", f"--output_dir={out}", *SMALL, *extra]
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# Digits 0-4 at the program's defaults (128 px, the small CNN, JudgeConfig's epochs): an easy task with known answers.
DIGITS = range(5)
DIGITS_PER_CLASS = 100


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_path):
    """(real digits, the judge's output on further real digits of the same classes, its summary)."""
    real = make_digits_folder(tmp_path_factory.mktemp("digits") / "real", mnist_path, DIGITS, DIGITS_PER_CLASS)
    further = make_digits_folder(
        tmp_path_factory.mktemp("digits") / "further", mnist_path, DIGITS, DIGITS_PER_CLASS, start=DIGITS_PER_CLASS
    )
    out = tmp_path_factory.mktemp("digits_judge") / "out"
    result = run_program("scripts.judge_xrays", [f"--real={real}", f"--synthetic={further}", f"--output_dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return real, out, json.loads((out / "summary.json").read_text()), result.stdout


@TRAINS
def test_further_real_digits_are_judged_as_real(digits):
    _, out, summary, stdout = digits
    classifier = summary["classifier"]
    assert classifier["held_out_accuracy"] >= 0.95
    assert abs(classifier["training_accuracy"] - classifier["held_out_accuracy"]) <= 0.10
    assert json.loads((out / "classifier.json").read_text())["training_accuracy"] == classifier["training_accuracy"]
    assert abs(summary["synthetic"]["accuracy_vs_intended"] - classifier["held_out_accuracy"]) <= 0.03
    assert min(summary["synthetic"]["accuracy_per_class"].values()) >= 0.8  # No class left behind.
    tstr = summary["tstr"]
    assert abs(tstr["train_on_synthetic_accuracy"] - tstr["train_on_real_accuracy"]) <= 0.05
    assert summary["outside_real"]["overall"] <= 0.08  # 1% of the real set itself, by construction.
    assert summary["warnings"] == [] and "Warning" not in stdout


@TRAINS
def test_digits_filed_under_random_classes_score_near_chance(tmp_path, digits, mnist_path):
    real, out, _, _ = digits
    rng = np.random.default_rng(3)
    shuffled = make_digits_folder(
        tmp_path / "shuffled",
        mnist_path,
        DIGITS,
        DIGITS_PER_CLASS,
        start=DIGITS_PER_CLASS,
        label_of=lambda *_: rng.integers(len(DIGITS)),
    )
    summary = judge_dataset(
        real,
        shuffled,
        str(tmp_path / "out"),
        JudgeConfig(tstr=False),
        classifier_path=str(out / "classifier.keras"),
        verbose=0,
    )
    assert abs(summary["synthetic"]["accuracy_vs_intended"] - 1 / len(DIGITS)) < 0.1
    assert summary["outside_real"]["overall"] <= 0.05  # Real digits, under the wrong names: not outside the real set.


@TRAINS
def test_noise_lies_outside_the_real_digits(tmp_path, digits):
    real, out, _, _ = digits
    noise = make_noise_folder(tmp_path / "noise", 20, classes=DIGIT_NAMES[: len(DIGITS)], size=128)
    summary = judge_dataset(
        real,
        noise,
        str(tmp_path / "out"),
        JudgeConfig(tstr=False),
        classifier_path=str(out / "classifier.keras"),
        verbose=0,
    )
    assert summary["outside_real"]["overall"] >= 0.95
    assert all(share >= 0.9 for share in summary["outside_real"].values())


def _clusters(rng, per_class, dims=128, classes=3):
    """Features of `classes` well separated Gaussian clusters, and their labels."""
    labels = np.repeat(np.arange(classes), per_class)
    return rng.normal(size=(len(labels), dims)) + 10.0 * np.eye(classes, dims)[labels], labels


def test_outside_real_is_about_one_percent_for_real_features_and_all_for_far_ones():
    rng = np.random.default_rng(0)
    real, labels = _clusters(rng, 1000)
    more, more_labels = _clusters(rng, 1000)
    share = outside_real(real, labels, more, more_labels, ["a", "b", "c"])
    assert 0.002 <= share["overall"] <= 0.03 and set(share) == {"overall", "a", "b", "c"}
    far = more + 3.0  # Every feature shifted: nearer no class than its real images are.
    assert outside_real(real, labels, far, more_labels, ["a", "b", "c"])["overall"] == 1.0


def test_small_classes_mark_fid_unreliable_and_give_kid_a_real_spread():
    rng = np.random.default_rng(1)
    real, labels = _clusters(rng, 400)
    synthetic, synthetic_labels = _clusters(rng, 60)
    result = distances(real, labels, synthetic, synthetic_labels, ["a", "b", "c"], seed=0)
    assert result["overall"]["count"] == 180 and result["overall"]["fid_reliable"]
    for name in ("a", "b", "c"):
        assert result[name]["count"] == 60 and not result[name]["fid_reliable"]
        assert result[name]["kid_std"] > 0 and result[name]["kid_real_floor_std"] > 0
        # Two samples of one distribution: KID within a few spreads of 0.
        assert abs(result[name]["kid"]) < 4 * result[name]["kid_std"]


def test_a_training_accuracy_far_above_held_out_accuracy_is_warned_about():
    summary = {
        "classes": ["a"],
        "real_classes_not_generated": [],
        "warnings": [],
        "classifier": {
            "backbone": "small_cnn",
            "held_out_accuracy": 0.62,
            "held_out_count": 40,
            "training_accuracy": 0.98,
        },
        "synthetic": {
            "count": 2,
            "accuracy_vs_intended": 0.5,
            "mean_confidence": 0.9,
            "intended_share": {"a": 1.0},
            "accuracy_per_class": {"a": 0.5},
            "confidence_per_class": {"a": 0.9},
        },
        "outside_real": {"overall": 0.0, "a": 0.0},
        "distances": {"overall": None, "a": None},
    }
    summary["warnings"] = classifier_warnings(summary["classifier"])
    assert len(summary["warnings"]) == 1 and "98.0% in training but 62.0%" in summary["warnings"][0]
    assert "--epochs" in summary["warnings"][0] and "--backbone" in summary["warnings"][0]
    assert "Warning: the judge's classifier scored 98.0%" in format_summary(summary)
    assert classifier_warnings(dict(summary["classifier"], training_accuracy=0.70)) == []
    # A classifier saved before the record had it.
    assert classifier_warnings(dict(summary["classifier"], training_accuracy=None)) == []


def test_predictions_in_padded_batches_equal_the_classifiers_own():
    """`predict` runs every batch at full size (one trace per classifier): the padding changes nothing."""
    model = build_classifier(3, JudgeConfig(image_size=16))
    images = np.random.default_rng(0).uniform(size=(21, 16, 16, 1)).astype("float32")
    features, probabilities = predict(model, images, batch_size=8)
    assert features.shape == (21, 128) and probabilities.shape == (21, 3)
    np.testing.assert_allclose(probabilities, model.predict(images, batch_size=21, verbose=0), rtol=1e-5, atol=1e-6)
