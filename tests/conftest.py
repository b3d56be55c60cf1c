import ctypes
import gc
import os
import sys
import time

import numpy as np
import pytest

from helpers.checks import SHARED_DATA, skip_or_fail

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Full-sized Stable Diffusion networks (about 4 GB a set) are built in a few modules, one
# after another: with TensorFlow's oneDNN allocator and glibc's heap, a freed set stays
# counted against the machine. The system allocator, with every block of 1 MB or more
# mapped on its own, gives it back to the OS.
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
if sys.platform == "linux":
    M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h.
    ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1 << 20)


def pytest_collection_modifyitems(items):
    """The bridge's parity module runs last. TensorFlow keeps what a network's graph functions
    touched after the network is deleted (eager calls do not), and parity's set is the only
    full-sized one that this process runs in graph mode: last, it stacks on nothing."""
    items.sort(key=lambda item: item.path.name == "test_diffusers_parity.py")


def _log_test(nodeid, event):
    if os.environ.get("GENLAB_TEST_LOG"):
        with open(os.environ["GENLAB_TEST_LOG"], "a") as log:
            log.write(f"{time.monotonic()} {event} {nodeid}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    """A line as each test starts and ends, in the process that runs it (under pytest-xdist, its
    worker), for .ci/measure.py to say which tests the suite's memory peaked in."""
    _log_test(item.nodeid, "start")
    yield
    _log_test(item.nodeid, "end")


@pytest.fixture(autouse=True, scope="module")
def collect_networks():
    """Keras networks are reference cycles, which CPython frees only at its occasional full
    collection: collect when a module ends, so its networks are gone before the next builds its own."""
    yield
    gc.collect()


def _local_file(env_var, shared_name):
    """A stand-in for a download: $env_var, else ../shared/data/shared_name (CI's layout)."""
    path = os.environ.get(env_var) or os.path.join(SHARED_DATA, shared_name)
    if not os.path.isfile(path):
        skip_or_fail(f"no local {shared_name}: set {env_var}=/path/to/{os.path.basename(shared_name)}")
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
def clip_tokenizer(clip_bpe_path):
    from xray.weights import load_tokenizer

    return load_tokenizer(clip_bpe_path)
