"""Trains LeNet-5 on MNIST: `train(LeNetConfig(...), model_path)`. No flags in here.

Writes the model (`.keras`) and beside it `<name>.metrics.json` (test accuracy, confusion
matrix, training time) and `<name>.confusion.png`.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from genlab import plots
from genlab.errors import UserError
from genlab.files import atomic_path, check_output_path, load_model_file, write_json
from genlab.mnist import load_mnist
from lenet.metrics import confusion_matrix
from lenet.model import FEATURES_LAYER, build_lenet5


@dataclasses.dataclass
class LeNetResult:
    model: keras.Model
    test_accuracy: float
    confusion: np.ndarray
    seconds: float
    model_path: str


def sidecar_paths(model_path):
    """Where the metrics JSON and confusion-matrix figure of a model file live."""
    stem = model_path[: -len(".keras")] if model_path.endswith(".keras") else model_path
    return f"{stem}.metrics.json", f"{stem}.confusion.png"


def train(config, model_path, verbose=1):
    if not model_path.endswith(".keras"):
        raise UserError(f"--model_path={model_path!r} must end in .keras")
    check_output_path(model_path, "--model_path", folder=False)
    keras.utils.set_random_seed(config.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(config.mnist_path or None)
    if config.num_train_images:
        x_train, y_train = x_train[: config.num_train_images], y_train[: config.num_train_images]

    model = build_lenet5()
    steps = config.epochs * max(1, len(x_train) // config.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    start = time.time()
    model.fit(_training_data(x_train, y_train, config), epochs=config.epochs, shuffle=False, verbose=verbose)
    seconds = time.time() - start

    logits = model.predict(x_test[..., None].astype("float32"), batch_size=1000, verbose=0)
    predicted = logits.argmax(axis=1)
    accuracy = float((predicted == y_test).mean())
    confusion = confusion_matrix(y_test, predicted)

    os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    metrics_path, confusion_path = sidecar_paths(model_path)
    write_json(
        metrics_path,
        {
            "test_accuracy": accuracy,
            "test_error": 1 - accuracy,
            "training_seconds": seconds,
            "confusion_matrix": confusion,
            "config": dataclasses.asdict(config),
        },
    )
    plots.save_matrix(
        confusion_path,
        confusion,
        "predicted digit",
        "true digit",
        f"LeNet-5 on the MNIST test set: {accuracy:.2%} accuracy",
    )
    return LeNetResult(model, accuracy, confusion, seconds, model_path)


def _training_data(x, y, config):
    images = x[..., None].astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, y.astype("int32")))
    data = data.shuffle(len(images), seed=config.seed).batch(config.batch_size)
    if config.augment:
        # Shifts of up to 2 px keep every digit legible. (Small rotations on top bought nothing
        # measurable in a 6-epoch run.)
        augment = keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=config.seed)
        data = data.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def load_classifier(path):
    """Loads a LeNet saved by `train`, checking it fits MNIST and has the feature layer."""
    model = load_model_file(path, "classifier", "train one with genlab-train-lenet, or pass --classifier")
    if tuple(model.inputs[0].shape[1:]) != (28, 28, 1) or model.outputs[0].shape[-1] != 10:
        raise UserError(
            f"{path!r} is not an MNIST classifier: it maps {model.inputs[0].shape} to {model.outputs[0].shape}"
        )
    try:
        model.get_layer(FEATURES_LAYER)
    except ValueError:
        raise UserError(f"{path!r} has no {FEATURES_LAYER!r} layer; train it with genlab-train-lenet") from None
    return model
