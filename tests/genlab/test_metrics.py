import numpy as np
import pytest

from genlab import metrics
from genlab.metrics import frechet_distance, kernel_distance


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


def test_fid_warns_when_the_square_root_is_not_real(monkeypatch):
    features = np.random.default_rng(0).normal(size=(200, 4))
    assert frechet_distance(features, features + 1.0) == pytest.approx(4.0, rel=1e-6)  # No warning on sound input.
    real_root = metrics.scipy.linalg.sqrtm
    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", lambda m: real_root(m) + 0.5j)
    with pytest.warns(RuntimeWarning, match="imaginary part of 0.5"):
        frechet_distance(features, features + 1.0)


def test_kid_is_about_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, spread = kernel_distance(a, b, subset_size=200, num_subsets=20)
    assert abs(same) < 3 * spread + 1e-3  # Unbiased: zero within its own spread.
    near, _ = kernel_distance(a, b + 0.5, subset_size=200, num_subsets=20)
    far, _ = kernel_distance(a, b + 2.0, subset_size=200, num_subsets=20)
    assert 0.01 < near < far


def test_kid_matches_the_formula_on_a_hand_sized_case():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[1.0, 1.0], [2.0, 0.0]])
    k = lambda x, y: (x @ y / 2 + 1) ** 3  # noqa: E731
    expected = (2 * k(a[0], a[1]) + 2 * k(b[0], b[1])) / 2 - 2 * np.mean([k(x, y) for x in a for y in b])
    value, spread = kernel_distance(a, b, num_subsets=3)
    assert value == pytest.approx(expected) and spread == pytest.approx(0, abs=1e-12)
