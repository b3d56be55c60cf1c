"""genlab.optimizers: Keras's Adam in TensorFlow's fused kernel, and the in-place moving average."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from genlab.optimizers import FusedAdam, update_moving_average

from helpers.optimizers import AdamOnDenseGradients


def train(optimizer, steps=6):
    """A dense layer and an embedding (whose gradient is sparse: the rows looked up, some twice)
    after `steps` updates in a traced function, and the optimizer's moments."""
    keras.utils.set_random_seed(4)
    embedding, dense = keras.layers.Embedding(50, 8), keras.layers.Dense(3)
    ids = keras.Input((), dtype="int32")
    model = keras.Model(ids, dense(embedding(ids)))
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, 50, 16).astype("int32"), rng.standard_normal((16, 3)).astype("float32"))] * steps

    @tf.function
    def update(ids, targets):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(ids) - targets) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for batch in batches:
        update(*batch)
    return [np.asarray(v) for v in model.trainable_variables + optimizer.variables]


def test_gives_keras_adams_updates_to_dense_and_embedding_weights_with_a_schedule():
    schedule = lambda: keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)  # noqa: E731
    expected = train(AdamOnDenseGradients(schedule(), beta_1=0.5))
    got = train(FusedAdam(schedule(), beta_1=0.5))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        # TensorFlow's kernel takes 1 - beta_2 in float32 (9.9998713e-4 for 0.999), Keras in double.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The update moved the weights: equal weights are not equal because nothing happened.
    untrained = train(FusedAdam(0.0))
    assert np.abs(got[0] - untrained[0]).max() > 1e-2


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(amsgrad=True)


def test_moving_average_in_place():
    average = keras.Variable(np.array([1.0, 2.0, -4.0], "float32"))
    value = np.array([3.0, 2.0, 0.0], "float32")
    update_moving_average(average, tf.constant(value), tf.constant(0.75))
    np.testing.assert_allclose(average.numpy(), 0.75 * np.array([1.0, 2.0, -4.0]) + 0.25 * value, rtol=1e-6)
