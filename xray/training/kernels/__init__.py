"""The training kernels: KerasCV's layers computed as the same functions, keeping less for the
backward pass or skipping a slow TensorFlow gradient. `use_training_kernels` is the one entry point.

They apply in fine-tuning only; generation runs KerasCV's layers as they are.
`genlab-xray-finetune --notraining_kernels` trains with KerasCV's stock layers instead.
"""

import types

import keras

# KerasCV exports none of Stable Diffusion's layers: keras_cv.src, held by setup.py's keras-cv==0.9.0 pin
# (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.diffusion_model import GEGLU, CrossAttention, ResBlock

from xray.training.kernels.attention import cross_attention_call, geglu_call, res_block_call
from xray.training.kernels.convolution import product_gradient_convolution
from xray.training.kernels.lora import factored_call
from xray.training.kernels.normalization import group_norm_call, layer_norm_call

# Layer type -> the `call` that replaces its own.
CALLS = {
    CrossAttention: cross_attention_call,
    GEGLU: geglu_call,
    ResBlock: res_block_call,
    keras.layers.LayerNormalization: layer_norm_call,
    keras.layers.GroupNormalization: group_norm_call,
}


def use_training_kernels(network):
    """Replaces, on the layer instances of `network` (weights untouched):

    - CrossAttention.call: attention in query chunks, the probabilities computed again in the
      backward pass (`attention.attention`);
    - GEGLU.call: its GELU keeping only its input, the large projections computed again (`attention.geglu`);
    - ResBlock.call, LayerNormalization.call, GroupNormalization.call: normalizations keeping only
      their input, a ResBlock's swish inside its normalization (`normalization.normalize`);
    - Conv2D.convolution_op: a frozen kernel's input gradient as one matrix product (`convolution`);
    - Dense.call where LoRA is on: x W + (x A) B, as PEFT computes it (`lora.factored_call`).

    Call it after LoRA is enabled. Each replacement is the function it replaces, to round-off:
    tests/xray/training/test_kernels_*.py compare each with KerasCV's or Keras's own layer, in
    values and gradients. `Layer._flatten_layers` is private Keras API, held by setup.py's keras
    pin; tests/test_private_apis.py fails when a release moves it.
    """
    for layer in network._flatten_layers(include_self=False):
        if type(layer) in CALLS:
            layer.call = types.MethodType(CALLS[type(layer)], layer)
        elif type(layer) is keras.layers.Conv2D:
            layer.convolution_op = types.MethodType(product_gradient_convolution, layer)
        elif isinstance(layer, keras.layers.Dense) and layer.lora_enabled:
            layer.call = types.MethodType(factored_call, layer)
    return network
