"""AdamW for many small variables (LoRA adapters): Keras's update in a fraction of the graph.

Keras's AdamW builds each variable's update from about two dozen small ops: the bias
corrections and (in its weight decay) the learning-rate schedule again for every variable,
then the moment and weight arithmetic. With hundreds of adapter tensors that makes the
optimizer most of a training step's graph, and TensorFlow's memory for a graph, and the time
of its first run, grow with its ops. Here the step's factors are computed once per update, and
each variable takes TensorFlow's fused Adam kernel (`ResourceApplyAdam`, on CPUs, GPUs and
TPUs: the same formula as Keras's Adam) after AdamW's decoupled decay, var - lr * weight_decay * var.
"""

import keras
import tensorflow as tf
from keras import ops


class AdamW(keras.optimizers.Adam):
    """keras.optimizers.AdamW's update (the same variables, so the same checkpoints), equal to
    round-off, without its `exclude_from_weight_decay` options: every variable decays."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, **kwargs)  # No weight_decay for the base: the update applies it.
        self.decoupled_weight_decay = weight_decay
        self._factors = {}

    def apply(self, grads, trainable_variables=None):
        self._factors = {}  # Made again by the update's first variable, from this update's step and rate.
        return super().apply(grads, trainable_variables)

    def _step_factors(self, learning_rate, dtype):
        """ResourceApplyAdam's scalar arguments and lr * weight_decay in `dtype`, made once per
        update and dtype: every variable's update gets the same rate and step."""
        if dtype not in self._factors:
            lr = ops.cast(learning_rate, dtype)
            step = ops.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
            adam = {
                "lr": lr,
                "beta1": beta_1,
                "beta2": beta_2,
                "epsilon": ops.cast(self.epsilon, dtype),
                "beta1_power": ops.power(beta_1, step),
                "beta2_power": ops.power(beta_2, step),
            }
            self._factors[dtype] = adam, lr * self.decoupled_weight_decay
        return self._factors[dtype]

    def update_step(self, gradient, variable, learning_rate):
        adam, decay = self._step_factors(learning_rate, variable.dtype)
        index = self._get_variable_index(variable)
        if self.decoupled_weight_decay:
            self.assign_sub(variable, variable * decay)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            grad=ops.cast(gradient, variable.dtype),
            **adam,
        )
