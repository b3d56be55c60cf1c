import ctypes
import gc
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite builds full-sized Stable Diffusion networks (about 4 GB a set) in one module after
# another, and its memory ran past 24 GB: TensorFlow's oneDNN allocator keeps all it ever held
# and glibc keeps freed weights in its heap. With the system allocator and every block of 1 MB
# or more mapped on its own, a freed network goes back to the OS.
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
if sys.platform == "linux":
    M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h.
    ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1 << 20)


@pytest.fixture(autouse=True)
def collect_networks():
    """Keras networks are reference cycles, which CPython frees only at its occasional full
    collection: collect after every test, so that a test's networks are gone before the next
    test builds its own."""
    yield
    gc.collect()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def _local_file(env_var, shared_name):
    """A stand-in for a download: $env_var, else ../shared/data/shared_name (CI's layout)."""
    path = os.environ.get(env_var) or os.path.join(SHARED_DATA, shared_name)
    if not os.path.isfile(path):
        pytest.skip(f"no local {shared_name}: set {env_var}=/path/to/{os.path.basename(shared_name)}")
    return os.path.abspath(path)


@pytest.fixture(scope="session")
def mnist_path():
    """Real MNIST in keras.datasets.mnist's layout."""
    return _local_file("MNIST_NPZ", "mnist.npz")


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory, mnist_path):
    """The first 512 training and 512 test digits of real MNIST, as a small .npz."""
    with np.load(mnist_path) as data:
        arrays = {k: data[k][:512] for k in ("x_train", "y_train", "x_test", "y_test")}
    path = tmp_path_factory.mktemp("mnist") / "tiny_mnist.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="session")
def clip_bpe_path():
    """CLIP's BPE merges, the file KerasCV's tokenizer downloads."""
    return _local_file("CLIP_BPE_PATH", "clip/bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture(scope="session")
def random_sd(clip_bpe_path):
    """KerasCV's real Stable Diffusion networks at 128x128 with random weights (built once, ~45 s).

    float32, not the default `auto`, so every machine tests the same numbers: `auto` is
    bfloat16 on some CPUs, tested apart at the end of test_xray_weights.py.
    """
    from xray.weights import load_stable_diffusion

    return load_stable_diffusion(128, "random", tokenizer_path=clip_bpe_path, precision="float32")
