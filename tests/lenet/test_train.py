import json

import keras
import numpy as np
import pytest

from genlab.errors import UserError
from lenet.config import LeNetConfig
from lenet.model import build_lenet5, probabilities_and_features
from lenet.train import load_classifier, sidecar_paths, train


def test_architecture_is_lenet5():
    model = build_lenet5()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.AveragePooling2D) and layer.pool_size == (2, 2)
    ]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [c.filters for c in convs] == [6, 16] and [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert len(pools) == 2 and dense == [120, 84, 10]
    probs, features = probabilities_and_features(model)(np.zeros((3, 28, 28, 1), "float32"))
    assert probs.shape == (3, 10) and features.shape == (3, 84)
    np.testing.assert_allclose(np.asarray(probs).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_trains_well_above_chance_on_a_small_real_slice(mnist_path, tmp_path):
    config = LeNetConfig(epochs=4, num_train_images=4000, mnist_path=mnist_path, jit_compile=False)
    result = train(config, str(tmp_path / "lenet.keras"), verbose=0)
    assert result.test_accuracy > 0.8  # Chance is 0.10; on the full 10,000-image test set.
    assert result.confusion.sum() == 10000 and np.trace(result.confusion) == round(result.test_accuracy * 10000)
    metrics_path, confusion_path = sidecar_paths(str(tmp_path / "lenet.keras"))
    with open(metrics_path) as f:
        assert json.load(f)["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert (tmp_path / "lenet.confusion.png").is_file()
    reloaded = load_classifier(str(tmp_path / "lenet.keras"))
    digits = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(digits, verbose=0), result.model.predict(digits, verbose=0), atol=1e-5)


def test_load_classifier_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_classifier(str(tmp_path / "missing.keras"))
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a loadable Keras model"):
        load_classifier(str(tmp_path / "junk.keras"))
    generator_like = keras.Sequential([keras.Input((16,)), keras.layers.Dense(784), keras.layers.Reshape((28, 28, 1))])
    generator_like.save(str(tmp_path / "generator.keras"))
    with pytest.raises(UserError, match="not an MNIST classifier"):
        load_classifier(str(tmp_path / "generator.keras"))
    featureless = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    featureless.save(str(tmp_path / "featureless.keras"))
    with pytest.raises(UserError, match="no 'features' layer"):
        load_classifier(str(tmp_path / "featureless.keras"))
