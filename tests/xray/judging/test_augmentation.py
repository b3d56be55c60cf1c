"""The augmentation test: its parts on hand-made inputs, then the judge's classifier on real digits
with known answers (synthetic = further real digits helps, the same digits under wrong classes
hurts, noise does not help)."""

import hashlib

import numpy as np
import pytest

from xray.config import JudgeConfig
from xray.judging.augmentation import ARMS, augmentation_test, duplicate_indices, scores, verdict

DIGITS = 5


def test_the_control_duplicates_as_many_real_images_per_class_as_the_synthetic_set_holds():
    y_train = np.array([0, 0, 0, 1, 1, 2])
    y_synthetic = np.array([0] * 7 + [1] * 2 + [2] * 0)
    chosen = duplicate_indices(y_train, y_synthetic, seed=0)
    assert np.bincount(y_train[chosen], minlength=3).tolist() == [7, 2, 0]
    zeros = chosen[y_train[chosen] == 0]
    assert sorted(zeros[:3]) == [0, 1, 2] and sorted(zeros[3:6]) == [0, 1, 2]  # Each once before any twice.
    assert not np.array_equal(chosen, duplicate_indices(y_train, y_synthetic, seed=1))
    with pytest.raises(ValueError, match="class 2 has synthetic images but no real training images"):
        duplicate_indices(np.array([0, 1]), np.array([2]), seed=0)


def test_balanced_accuracy_counts_a_rare_class_as_much_as_a_common_one():
    y_test = np.array([0] * 8 + [1] * 2)
    everything_common = scores(np.zeros(10, dtype=int), y_test, 2)
    assert everything_common["accuracy"] == 0.8 and everything_common["balanced_accuracy"] == 0.5
    assert everything_common["recall"] == {0: 1.0, 1: 0.0}


def arms(mixed, control, real):
    """Arms with these balanced accuracies over three seeds."""
    return {
        name: {"balanced_accuracy": {"mean": float(np.mean(v)), "spread": float(np.std(v, ddof=1))}}
        for name, v in (("real_plus_synthetic", mixed), ("real_plus_duplicates", control), ("real", real))
    }


@pytest.mark.parametrize(
    "mixed, control, real, helped, hurt, words",
    [
        ([0.80, 0.82, 0.81], [0.70, 0.71, 0.72], [0.65, 0.66, 0.64], True, False, "synthetic images helped"),
        # Ahead of the control, but by less than the seeds disagree: not a gain.
        ([0.70, 0.80, 0.75], [0.70, 0.74, 0.72], [0.65, 0.66, 0.64], False, False, "did not help"),
        ([0.50, 0.52, 0.51], [0.70, 0.71, 0.72], [0.70, 0.70, 0.71], False, True, "synthetic images hurt"),
    ],
)
def test_the_verdict_needs_more_than_the_seeds_spread(mixed, control, real, helped, hurt, words):
    result = verdict(arms(mixed, control, real))
    assert (result["helped"], result["hurt"]) == (helped, hurt) and words in result["verdict"]


@pytest.fixture(scope="module")
def digits(mnist_path):
    """Real digits 0-4 as judge inputs (N, 28, 28, 1) in [0, 1]: 8 a class to train on, 40 to test
    on, and 40 further ones, all different images."""
    with np.load(mnist_path) as data:
        images, labels = data["x_train"], data["y_train"]
    picked = {"train": ([], []), "test": ([], []), "further": ([], [])}
    for digit in range(DIGITS):
        mine = np.flatnonzero(labels == digit)
        for name, part in (("train", mine[:8]), ("test", mine[8:48]), ("further", mine[48:88])):
            picked[name][0].append(images[part])
            picked[name][1].append(np.full(len(part), digit))
    return {
        name: (np.concatenate(x)[..., None].astype("float32") / 255.0, np.concatenate(y))
        for name, (x, y) in picked.items()
    }


@pytest.fixture(scope="module")
def fit_predict():
    """The judge's classifier, small; an arm trained before with the same data and seed (real
    alone, and the control, which depend on the synthetic set's counts only) is not trained again."""
    from xray.judging.judge import classifier_fit_predict

    train = classifier_fit_predict(JudgeConfig(image_size=28, epochs=20, batch_size=16), DIGITS)
    done = {}

    def cached(images, labels, seed, test_images):
        key = (seed, hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest())
        if key not in done:
            done[key] = train(images, labels, seed, test_images)
        return done[key]

    return cached


def run(digits, fit_predict, synthetic):
    (x_train, y_train), (x_test, y_test) = digits["train"], digits["test"]
    names = [str(d) for d in range(DIGITS)]
    report = augmentation_test(fit_predict, x_train, y_train, x_test, y_test, *synthetic, names, seeds=[0, 1])
    return report, {arm: report["arms"][arm]["balanced_accuracy"]["mean"] for arm in ARMS}


@pytest.mark.slow  # 8 small classifiers, then 4 more for each test below.
def test_further_real_digits_help_at_least_as_much_as_duplicates(digits, fit_predict):
    report, balanced = run(digits, fit_predict, digits["further"])
    assert report["train_counts"] == {
        "real": 40,
        "real_plus_synthetic": 240,
        "real_plus_duplicates": 240,
        "synthetic": 200,
    }
    assert balanced["real_plus_synthetic"] >= balanced["real_plus_duplicates"] - 0.01, balanced
    assert balanced["real_plus_synthetic"] >= balanced["real"] + 0.05, balanced  # New digits teach more.
    assert not report["hurt"] and len(report["arms"]["real"]["balanced_accuracy"]["values"]) == 2


@pytest.mark.slow
def test_the_same_digits_under_wrong_classes_hurt(digits, fit_predict):
    x, y = digits["further"]
    report, balanced = run(digits, fit_predict, (x, (y + 1) % DIGITS))
    assert report["hurt"] and not report["helped"] and "hurt" in report["verdict"]
    assert balanced["real_plus_synthetic"] <= balanced["real"] - 0.2, balanced
    assert balanced["synthetic"] <= 0.1, balanced  # Trained on wrong labels alone: systematically wrong.


@pytest.mark.slow
def test_noise_does_not_help(digits, fit_predict):
    x, y = digits["further"]
    noise = np.random.default_rng(0).uniform(size=x.shape).astype("float32")
    report, balanced = run(digits, fit_predict, (noise, y))
    assert not report["helped"], report["verdict"]
    assert balanced["synthetic"] <= 0.35, balanced  # Noise teaches nothing about digits (chance is 0.2).
