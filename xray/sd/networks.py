"""KerasCV's Stable Diffusion v1 networks, built untrained: the one place they are constructed.

Every network is built with `download_weights=False`; `xray.weights` decides where weights
come from, and nothing is fetched here. Whatever loads them writes with `assign_in_place`.
"""

import keras
import numpy as np
import tensorflow as tf

# KerasCV exports none of Stable Diffusion's layers: keras_cv.src, held by setup.py's keras-cv==0.9.0 pin
# (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.decoder import Decoder
from keras_cv.src.models.stable_diffusion.diffusion_model import DiffusionModel
from keras_cv.src.models.stable_diffusion.image_encoder import ImageEncoder
from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoder

NETWORKS = ("text_encoder", "diffusion_model", "decoder")  # What generation runs.
IMAGE_ENCODER = "image_encoder"  # The VAE's encoder: images to latents, for fine-tuning.
MAX_PROMPT_TOKENS = 77  # CLIP's context: a start token, 75 prompt tokens and an end token.


def build_network(name, image_size, precision, frozen=False):
    """One of KerasCV's networks (NETWORKS or IMAGE_ENCODER), untrained, with layers in `precision`.

    `frozen`: the network's own weights will not train (it runs forward, or trains adapters,
    which `xray.training.adapters.add_adapters` keeps in float32). Under a mixed policy its weights are then
    stored in the compute dtype, as diffusers' training scripts store frozen weights: half the
    memory, and nothing kept for the backward pass but the weights themselves, where a mixed
    policy keeps a half-precision copy of each. It computes exactly what the mixed policy
    computes from the same weights, which it holds rounded to the compute dtype.
    """
    if frozen:
        precision = keras.dtype_policies.get(precision).compute_dtype
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # Layers take the policy when they are built.
    try:
        with tf.variable_creator_scope(_initial_value_from_host):
            if name == "text_encoder":
                return TextEncoder(MAX_PROMPT_TOKENS, download_weights=False)
            if name == "diffusion_model":
                return DiffusionModel(image_size, image_size, MAX_PROMPT_TOKENS, download_weights=False)
            if name == IMAGE_ENCODER:
                return ImageEncoder(download_weights=False)  # Fully convolutional: any image size.
            return Decoder(image_size, image_size, download_weights=False)
    finally:
        keras.config.set_dtype_policy(previous)


def _initial_value_from_host(next_creator, **kwargs):
    """Creates a variable from its initializer's value copied to host memory, so the variable's
    buffer is allocated once the initializer's tensors are freed, and takes their place in
    TensorFlow's allocator instead of leaving a hole of its size beside each weight."""
    if callable(kwargs["initial_value"]):
        kwargs["initial_value"] = np.array(kwargs["initial_value"](), copy=True)
    return next_creator(**kwargs)


def assign_in_place(variable, value):
    """Gives `variable` the value `value` where its old value was in memory.

    With `assign`, a variable can take a new buffer while its old one is still held and free
    the old one after, so loading a network tensor by tensor scatters its weights among freed
    blocks, which TensorFlow's allocator later hands out whole to smaller tensors: memory held
    and never used (docs/benchmarks.md measures it for the U-Net). Releasing the old buffer
    first (an empty value, which the raw op accepts) lets the new tensor take its place, same
    size; a value of another dtype is converted before, so its wider copy goes elsewhere. A
    distributed variable's copies are assigned by its strategy.
    """
    target = variable.value if isinstance(variable, keras.Variable) else variable
    if isinstance(target, tf.distribute.DistributedValues):
        target.assign(value)
        return
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(f"{variable.name} has shape {tuple(target.shape)}, the value {tuple(value.shape)}")
    if tf.as_dtype(value.dtype) != target.dtype:
        value = tf.convert_to_tensor(value)
    tf.raw_ops.AssignVariableOp(resource=target.handle, value=tf.zeros([0], target.dtype), validate_shape=False)
    tf.raw_ops.AssignVariableOp(resource=target.handle, value=tf.cast(value, target.dtype), validate_shape=False)
