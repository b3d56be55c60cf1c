"""AdamW for many small variables (LoRA adapters): Keras's update in a fraction of the graph.

Keras's AdamW computes an update's bias corrections once for each variable, and its weight
decay evaluates the learning-rate schedule again for each variable. With hundreds of adapter
tensors that makes the optimizer most of a training step's graph, and TensorFlow's memory for a
graph, and the time of its first run, grow with its ops. Here both are computed once per update
and shared by every variable's update; the decay goes into the same assignment:
var - lr * weight_decay * var - alpha * m / (sqrt(v) + epsilon), AdamW's decoupled decay.
"""

import keras
from keras import ops


class AdamW(keras.optimizers.Adam):
    """keras.optimizers.AdamW's update (the same variables, so the same checkpoints), equal to
    round-off, without its `exclude_from_weight_decay` options: every variable decays."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, **kwargs)  # No weight_decay for the base: the update applies it.
        self.decoupled_weight_decay = weight_decay
        self._factors = None

    def apply(self, grads, trainable_variables=None):
        self._factors = None  # Made again by the update's first variable, from this update's step and rate.
        return super().apply(grads, trainable_variables)

    def _step_factors(self, learning_rate):
        """(alpha, lr * weight_decay) for this update, made once: every variable's update gets the
        same learning-rate tensor and step."""
        if self._factors is None:
            lr = ops.cast(learning_rate, "float32")
            step = ops.cast(self.iterations + 1, "float32")
            alpha = lr * ops.sqrt(1 - ops.power(self.beta_2, step)) / (1 - ops.power(self.beta_1, step))
            self._factors = (alpha, lr * self.decoupled_weight_decay)
        return self._factors

    def update_step(self, gradient, variable, learning_rate):
        alpha, decay = (ops.cast(factor, variable.dtype) for factor in self._step_factors(learning_rate))
        gradient = ops.cast(gradient, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        self.assign_sub(variable, variable * decay + m * alpha / (ops.sqrt(v) + self.epsilon))
