"""The MNIST loader shared by the GAN and LeNet.

Default: `keras.datasets.mnist.load_data()` (downloads once, then caches). Offline machines
point `path` (the scripts' `--mnist_path`) or the `MNIST_NPZ` environment variable at a
local `.npz` in Keras's layout: `x_train` (60000, 28, 28) uint8, `y_train`, `x_test`,
`y_test`.
"""

import os
import zipfile

import numpy as np

from genlab.errors import UserError

ENV_VAR = "MNIST_NPZ"
NUM_CLASSES = 10  # The digits 0..9.
_HOW_TO_FIX = (
    f"pass --mnist_path=/path/to/mnist.npz or set {ENV_VAR}=/path/to/mnist.npz "
    "(a file in keras.datasets.mnist's layout), or connect to the internet so Keras can download it"
)


def load_mnist(path=None):
    """Returns `(x_train, y_train), (x_test, y_test)` as uint8 arrays, like Keras.

    `path` wins over `$MNIST_NPZ`, which wins over the Keras download.
    """
    path = path or os.environ.get(ENV_VAR)
    if path:
        return _load_npz(path)
    import keras  # Here, not at the top: programs import this module for its names, before any work.

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # Keras raises several types for "no network".
        raise UserError(f"could not download MNIST ({type(error).__name__}); {_HOW_TO_FIX}") from None


def _load_npz(path):
    if not os.path.isfile(path):
        raise UserError(f"MNIST file {path!r} does not exist; {_HOW_TO_FIX}")
    try:
        # allow_pickle=False: an .npz may hold pickled objects, which can run code on load.
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"MNIST file {path!r} is not a valid MNIST .npz ({error}); {_HOW_TO_FIX}") from None
    _check_layout(path, arrays)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_layout(path, arrays):
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        problem = None
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            problem = f"x_{split} has shape {x.shape}, expected (N, 28, 28)"
        elif y.shape != (x.shape[0],):
            problem = f"y_{split} has shape {y.shape}, expected ({x.shape[0]},)"
        elif x.dtype != np.uint8:
            problem = f"x_{split} has dtype {x.dtype}, expected uint8"
        elif y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            problem = f"y_{split} holds labels outside 0..9"
        if problem:
            raise UserError(f"MNIST file {path!r} is malformed: {problem}; {_HOW_TO_FIX}")
