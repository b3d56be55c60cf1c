"""Fine-tuning's AdamW (xray.training.optimizer) makes Keras's AdamW updates with a smaller graph."""

import keras
import numpy as np
import tensorflow as tf

from xray.training.optimizer import AdamW


def schedule():
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=6, alpha=0.1, warmup_target=0.05, warmup_steps=3)


def train(optimizer, steps=8):
    """Weights after `steps` updates of many small variables, as adapters are, and the update's graph."""
    rng = np.random.default_rng(5)
    variables = [keras.Variable(rng.standard_normal(shape).astype(np.float32)) for shape in [(3, 4), (4, 3)] * 6]
    optimizer.build(variables)
    grads = [[tf.constant(rng.standard_normal(v.shape), tf.float32) for v in variables] for _ in range(steps)]
    update = tf.function(lambda grads: optimizer.apply(grads, variables))
    for step_grads in grads:
        update(step_grads)
    graph = update.get_concrete_function(grads[0]).graph
    return [np.asarray(v) for v in variables], len(graph.get_operations())


def test_gives_keras_adamw_updates_with_a_schedule_and_weight_decay_in_fewer_ops():
    expected, keras_ops = train(keras.optimizers.AdamW(schedule(), weight_decay=0.1))
    got, ops = train(AdamW(schedule(), weight_decay=0.1))
    for a, b in zip(got, expected):
        # TensorFlow's kernel takes 1 - beta_2 in float32 (9.9998713e-4 for 0.999), Keras in double.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert ops < 0.6 * keras_ops, (ops, keras_ops)  # Per variable: Keras recomputes the step factors and the schedule.


def test_weight_decay_counts():
    """The decay is not lost: without it the weights end elsewhere."""
    decayed, _ = train(AdamW(schedule(), weight_decay=0.1))
    undecayed, _ = train(AdamW(schedule(), weight_decay=0.0))
    assert max(np.abs(a - b).max() for a, b in zip(decayed, undecayed)) > 1e-3
