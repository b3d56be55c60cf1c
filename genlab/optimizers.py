"""Keras's Adam update in TensorFlow's fused kernel, and a moving average updated in place.

Keras's Adam builds each variable's update from about two dozen ops: the bias corrections
(and any learning-rate schedule) again for every variable, then the moment and weight
arithmetic, each op writing a temporary the size of the variable. For many small variables
(LoRA adapters) those ops make most of a step's graph; for a few large ones (the GAN's cluster
embeddings, millions of values each) the temporaries make most of its memory traffic. Here the
step's factors are computed once per update, and each variable takes TensorFlow's fused Adam
kernel (`ResourceApplyAdam`, on CPUs, GPUs and TPUs: the same formula as Keras's Adam), which
reads and writes the weight and its two moments once.
"""

import keras
import tensorflow as tf
from keras import ops


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam's update (the same variables, so the same checkpoints), equal to
    round-off, without `amsgrad`. A sparse gradient (an embedding's) is made dense first, so a row
    looked up twice in a batch gets the second moment of its summed gradient, as Adam defines
    it; Keras's Adam adds up the squares of each lookup's gradient instead."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("FusedAdam has no amsgrad; use keras.optimizers.Adam")
        self._factors = {}

    def apply(self, grads, trainable_variables=None):
        self._factors = {}  # Made again by the update's first variable, from this update's step and rate.
        return super().apply(grads, trainable_variables)

    def _step_factors(self, learning_rate, dtype):
        """ResourceApplyAdam's scalar arguments in `dtype`, made once per update and dtype: every
        variable's update gets the same rate and step."""
        if dtype not in self._factors:
            step = ops.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
            self._factors[dtype] = {
                "lr": ops.cast(learning_rate, dtype),
                "beta1": beta_1,
                "beta2": beta_2,
                "epsilon": ops.cast(self.epsilon, dtype),
                "beta1_power": ops.power(beta_1, step),
                "beta2_power": ops.power(beta_2, step),
            }
        return self._factors[dtype]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            grad=ops.cast(gradient, variable.dtype),  # An embedding's sparse gradient becomes dense here.
            **self._step_factors(learning_rate, variable.dtype),
        )


def update_moving_average(average, value, decay):
    """average <- decay * average + (1 - decay) * value, as average -= (1 - decay) * (average - value)
    in one kernel: one temporary the size of the variable instead of three."""
    tf.raw_ops.ResourceApplyGradientDescent(
        var=average.handle, alpha=ops.cast(1.0 - decay, average.dtype), delta=average - ops.cast(value, average.dtype)
    )
