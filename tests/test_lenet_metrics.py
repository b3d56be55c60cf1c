import numpy as np
import pytest

from lenet import metrics as lenet_metrics
from lenet.metrics import class_distribution, entropy_bits, frechet_distance, mnist_score, quality_report


def one_hot(labels, confidence=1.0):
    probs = np.full((len(labels), 10), (1 - confidence) / 9)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def test_identical_feature_sets_have_zero_fid():
    features = np.random.default_rng(0).normal(size=(500, 84))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6)


def test_fid_of_shifted_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + 3.0  # Same covariance, mean moved by 3 in each of 4 dims.
    assert frechet_distance(a, b) == pytest.approx(4 * 9, rel=0.02)


def test_fid_grows_with_the_difference():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2000, 8))
    assert frechet_distance(a, a * 1.1) < frechet_distance(a, a * 2.0)


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


def test_fid_warns_when_the_square_root_is_not_real(monkeypatch):
    features = np.random.default_rng(0).normal(size=(200, 4))
    assert frechet_distance(features, features + 1.0) == pytest.approx(4.0, rel=1e-6)  # No warning on sound input.
    real_root = lenet_metrics.scipy.linalg.sqrtm
    monkeypatch.setattr(lenet_metrics.scipy.linalg, "sqrtm", lambda m: real_root(m) + 0.5j)
    with pytest.warns(RuntimeWarning, match="imaginary part of 0.5"):
        frechet_distance(features, features + 1.0)
