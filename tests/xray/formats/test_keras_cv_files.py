"""How weights get into a built network: `xray.sd.networks.assign_in_place` and the legacy HDF5
reader `xray.formats.keras_cv_files.load_keras_cv_weights`, on small Keras models."""

import keras
import numpy as np
import pytest

from xray.formats.keras_cv_files import load_keras_cv_weights, save_keras_cv_weights
from xray.sd.networks import assign_in_place


def small_model(width=3):
    """Layers with trainable and non-trainable weights (batch norm's statistics), whose order a
    reader has to keep."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(width)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.standard_normal(variable.shape).astype(np.float32))


def test_assign_in_place_writes_the_value_in_the_variable_dtype_and_keeps_earlier_reads():
    variable = keras.Variable(np.zeros((2, 3), np.float32))
    earlier = variable.value.read_value()
    assign_in_place(variable, np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(variable.numpy(), np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(earlier.numpy(), np.zeros((2, 3)))  # A read is a value, not a view.
    half = keras.Variable(np.zeros(3, np.float32), dtype="bfloat16")
    assign_in_place(half, np.float32([1.0, 1.00390625, 3.3]))  # Rounded as TensorFlow's cast rounds.
    assert half.numpy().astype(np.float32).tolist() == [1.0, 1.0, 3.296875]
    with pytest.raises(ValueError, match=r"has shape \(2, 3\), the value \(3, 2\)"):
        assign_in_place(variable, np.zeros((3, 2)))
    np.testing.assert_array_equal(variable.numpy(), np.arange(6).reshape(2, 3))  # Refused before any change.


def test_a_legacy_file_loads_as_keras_loads_it(tmp_path):
    saved, ours, keras_loaded = small_model(), small_model(), small_model()
    randomize(saved, 0)
    path = str(tmp_path / "weights.h5")
    save_keras_cv_weights(saved, path)
    load_keras_cv_weights(ours, path)
    keras_loaded.load_weights(path)
    for a, b, c in zip(saved.weights, ours.weights, keras_loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(c.numpy(), b.numpy())


@pytest.mark.parametrize(
    "other, message",
    [
        (
            lambda: small_model(width=5),
            r"layer 'dense.*' holds shapes \[\(4, 3\), \(3,\)\], dense.* needs \[\(4, 5\), \(5,\)\]",
        ),
        (
            lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
            "the file has weights for 3 layers, sequential.* has 1",
        ),
    ],
)
def test_a_file_that_does_not_fit_changes_nothing(tmp_path, other, message):
    saved, model = small_model(), other()
    path = str(tmp_path / "weights.h5")
    save_keras_cv_weights(saved, path)
    before = [v.numpy() for v in model.weights]
    with pytest.raises(ValueError, match=message):
        load_keras_cv_weights(model, path)
    for value, variable in zip(before, model.weights):
        np.testing.assert_array_equal(value, variable.numpy())
