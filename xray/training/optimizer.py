"""AdamW for fine-tuning: AdamW's decoupled weight decay, then Adam in TensorFlow's fused kernel
(`genlab.optimizers.FusedAdam`), which keeps the update of hundreds of adapter tensors a small
part of a training step's graph (TensorFlow's memory for a graph, and the time of its first
run, grow with its ops)."""

from keras import ops

from genlab.optimizers import FusedAdam


class AdamW(FusedAdam):
    """keras.optimizers.AdamW's update (the same variables, so the same checkpoints), equal to
    round-off, without its `exclude_from_weight_decay` options: every variable decays."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, **kwargs)  # No weight_decay for the base: the update applies it.
        self.decoupled_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        if self.decoupled_weight_decay:
            # var - lr * weight_decay * var, with the rate the fused update takes.
            decay = self._step_factors(learning_rate, variable.dtype)["lr"] * self.decoupled_weight_decay
            self.assign_sub(variable, variable * ops.cast(decay, variable.dtype))
        super().update_step(gradient, variable, learning_rate)
