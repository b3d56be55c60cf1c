import numpy as np
import pytest

from lenet.metrics import class_distribution, entropy_bits, mnist_score, quality_report


def one_hot(labels, confidence=1.0):
    probs = np.full((len(labels), 10), (1 - confidence) / 9)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def test_one_class_gives_score_1_and_entropy_0():
    probs = one_hot(np.full(100, 3))
    assert mnist_score(probs) == pytest.approx(1.0, abs=1e-6)
    assert entropy_bits(class_distribution(probs.argmax(1))) == 0


def test_uniform_confident_ten_classes_give_score_10():
    probs = one_hot(np.arange(1000) % 10)
    assert mnist_score(probs) == pytest.approx(10.0, rel=1e-6)
    assert entropy_bits(class_distribution(probs.argmax(1))) == pytest.approx(np.log2(10))


def test_unsure_predictions_score_low_even_if_spread():
    assert mnist_score(one_hot(np.arange(1000) % 10, confidence=0.2)) < 1.5


def test_report_accuracy_vs_intended():
    intended = np.arange(100) % 10
    predicted = intended.copy()
    predicted[intended == 4] = 9  # Every 4 comes out as a 9.
    features = np.random.default_rng(3).normal(size=(100, 84))
    report = quality_report(one_hot(predicted), features, features, intended)
    assert report["accuracy_vs_intended"] == pytest.approx(0.9)
    assert report["accuracy_vs_intended_per_class"][4] == 0.0
    assert report["accuracy_vs_intended_per_class"][9] == 1.0
    assert report["class_distribution"][9] == pytest.approx(0.2)
