import numpy as np
import pytest

from genlab.errors import UserError
from genlab.mnist import load_mnist


def test_loads_a_good_file(tiny_mnist):
    (x_train, y_train), (x_test, y_test) = load_mnist(tiny_mnist)
    assert x_train.shape == (512, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (512,) and x_test.shape == (512, 28, 28) and y_test.shape == (512,)


def test_environment_variable_is_used(tiny_mnist, monkeypatch):
    monkeypatch.setenv("MNIST_NPZ", tiny_mnist)
    (x_train, _), _ = load_mnist()
    assert len(x_train) == 512


def test_missing_file_names_both_ways_out(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--mnist_path.*MNIST_NPZ"):
        load_mnist(str(tmp_path / "nope.npz"))


def test_not_an_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_text("this is not a zip file")
    with pytest.raises(UserError, match="not a valid MNIST .npz.*--mnist_path"):
        load_mnist(str(path))


def test_wrong_keys(tmp_path):
    path = tmp_path / "keys.npz"
    np.savez(path, images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(UserError, match="not a valid MNIST .npz"):
        load_mnist(str(path))


def test_wrong_shape(tmp_path):
    path = tmp_path / "shape.npz"
    np.savez(
        path,
        x_train=np.zeros((3, 32, 32), np.uint8),
        y_train=np.zeros(3, np.uint8),
        x_test=np.zeros((3, 28, 28), np.uint8),
        y_test=np.zeros(3, np.uint8),
    )
    with pytest.raises(UserError, match=r"malformed: x_train has shape \(3, 32, 32\)"):
        load_mnist(str(path))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickle.npz"
    objects = np.empty(3, dtype=object)
    np.savez(path, x_train=objects, y_train=objects, x_test=objects, y_test=objects)
    with pytest.raises(UserError, match="not a valid MNIST .npz"):
        load_mnist(str(path))


def test_offline_download_failure_is_one_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("network unreachable")

    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(UserError, match="could not download MNIST.*--mnist_path.*MNIST_NPZ"):
        load_mnist()
