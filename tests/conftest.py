import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(REPO, "..", "shared", "data", "mnist.npz")


@pytest.fixture(scope="session")
def mnist_path():
    """Real MNIST: $MNIST_NPZ, else ../shared/data/mnist.npz (CI's layout)."""
    path = os.environ.get("MNIST_NPZ") or SHARED_MNIST
    if not os.path.isfile(path):
        pytest.skip("no local MNIST: set MNIST_NPZ=/path/to/mnist.npz")
    return os.path.abspath(path)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory, mnist_path):
    """The first 512 training and 512 test digits of real MNIST, as a small .npz."""
    with np.load(mnist_path) as data:
        arrays = {k: data[k][:512] for k in ("x_train", "y_train", "x_test", "y_test")}
    path = tmp_path_factory.mktemp("mnist") / "tiny_mnist.npz"
    np.savez(path, **arrays)
    return str(path)
