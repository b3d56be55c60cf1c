"""A LoRA Dense layer's call as PEFT computes it, for training."""

from keras import ops


def factored_call(self, inputs, training=None):
    """Dense.call for a layer with LoRA on, as PEFT computes it: x W + (x A) B alpha / r.

    Keras's own x (W + A B alpha / r) keeps a full-sized W + A B per layer for the backward
    pass and forms a full-sized gradient for it, only to reduce it to A's and B's; this keeps
    x A and forms their gradients directly. The same function, to float32 round-off.
    """
    adapter = ops.matmul(ops.matmul(inputs, self.lora_kernel_a), self.lora_kernel_b)
    # Dense._kernel (private, held by setup.py's keras pin) is W once LoRA is on; `kernel` is W + A B.
    x = ops.add(ops.matmul(inputs, self._kernel), adapter * (self.lora_alpha / self.lora_rank))
    if self.bias is not None:
        x = ops.add(x, self.bias)
    if self.activation is not None:
        x = self.activation(x)
    return x
