"""Fine-tuning's model and optimizer (xray.training.trainer): the weighted objective, clipping
after accumulation, and the weights' moving average."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xray.config import FinetuneConfig
from xray.sd.sampler import NoiseSchedule
from xray.training.plan import UpdatePlan
from xray.training.trainer import DiffusionFineTuner, training_optimizer

from helpers.standin_sd import WIDTH, diffusion_model


def config(**settings):
    return FinetuneConfig(learning_rate=0.05, warmup_steps=0, max_steps=10, **settings)


def updates(optimizer, gradients):
    """The variables after each `optimizer.apply` of `gradients` (a list per batch) to two small variables."""
    variables = [keras.Variable(np.full(shape, 0.5, np.float32)) for shape in [(3, 4), (4,)]]
    optimizer.build(variables)
    apply = tf.function(lambda grads: optimizer.apply(grads, variables))
    after = []
    for grads in gradients:
        apply([tf.constant(g) for g in grads])
        after.append([np.asarray(v) for v in variables])
    return after, variables


def random_gradients(batches, scale=3.0):
    rng = np.random.default_rng(0)
    return [[rng.standard_normal(s).astype(np.float32) * scale for s in [(3, 4), (4,)]] for _ in range(batches)]


def clipped(grads, norm):
    total = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    return [g * min(1.0, norm / total) for g in grads]


def test_gradients_are_clipped_to_the_global_norm_after_accumulation_and_the_schedule_counts_updates():
    gradients = random_gradients(6)  # Three updates of two batches; config()'s rate decays over 10 updates.
    got, _ = updates(training_optimizer(config(max_grad_norm=0.5, gradient_accumulation=2)), gradients)
    means = [[(a + b) / 2 for a, b in zip(*gradients[i : i + 2])] for i in range(0, 6, 2)]
    expected, _ = updates(training_optimizer(config(max_grad_norm=0)), [clipped(g, 0.5) for g in means])
    for a, b in zip(got[1::2], expected):  # After each update's second batch.
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    unclipped, _ = updates(training_optimizer(config(max_grad_norm=0)), means)
    assert np.abs(unclipped[-1][0] - expected[-1][0]).max() > 1e-3  # The clipping changed the updates.


def numpy_ema(values, momentum):
    """values[0], then average = momentum * average + (1 - momentum) * value for each later one."""
    average = values[0]
    for value in values[1:]:
        average = momentum * average + (1 - momentum) * value
    return average


def latent_batches(settings):
    """Batches of four cached 64 px latents, one caption and "", for the stand-in U-Net."""
    latents = np.random.default_rng(0).standard_normal((4, 8, 8, 4), dtype=np.float32)
    contexts = np.zeros((2, 77, WIDTH), np.float32)
    return UpdatePlan(latents, np.zeros(4, int), ["a circle", ""], NoiseSchedule.keras_cv(), settings, contexts)


def test_the_moving_average_follows_numpys_over_the_same_batches():
    for accumulation in (1, 2):
        settings = config(image_size=64, ema_decay=0.8, gradient_accumulation=accumulation)
        model = DiffusionFineTuner(diffusion_model(64))
        model.compile(optimizer=training_optimizer(settings))
        seen = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs=None: seen.append([np.asarray(v) for v in model.trainable_variables])
        )
        model.fit(latent_batches(settings).dataset(0, 6), epochs=1, verbose=0, callbacks=[record])
        # Keras's average starts at the first update's weights, then moves after every batch.
        after_first_update = seen[accumulation - 1 :]
        momentum = 0.8 ** (1 / accumulation)
        expected = [numpy_ema([weights[i] for weights in after_first_update], momentum) for i in range(len(seen[0]))]
        for variable, value in zip(model.trainable_variables, seen[-1]):
            variable.assign(value)  # Keras's fit ends with the averages in the weights: the trained ones back.
        with model.averaged_weights():
            for variable, average in zip(model.trainable_variables, expected):
                np.testing.assert_allclose(variable, average, rtol=1e-5, atol=1e-7)
        for variable, value in zip(model.trainable_variables, seen[-1]):
            np.testing.assert_array_equal(variable, value)  # The trained weights again after the block.
        assert max(np.abs(a - b).max() for a, b in zip(expected, seen[-1])) > 1e-4  # The average lags.


def test_the_training_loss_weighs_each_row_and_evaluation_does_not():
    batch = {
        key: tf.constant(value) for key, value in latent_batches(config(image_size=64, batch_size=2)).batch(0).items()
    }
    model = DiffusionFineTuner(diffusion_model(64))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    errors = np.asarray(model.noise_errors(batch, training=False))
    batch["loss_weight"] = tf.constant([1.0, 0.0])
    assert float(model.train_step(batch)["step_loss"]) == pytest.approx(errors[0] / 2, rel=1e-5)
    model.loss_tracker.reset_state()
    assert float(model.test_step(batch)["loss"]) == pytest.approx(errors.mean(), rel=1e-5)
