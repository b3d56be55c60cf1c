"""`use_training_kernels`, the kernels' one entry point: it replaces every layer kind it names, the
network computes what KerasCV's and Keras's layers compute, and fine-tuning's switch turns it off.
Each kernel's own proof is in the test file named after it."""

import keras
import numpy as np
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import GEGLU, CrossAttention, ResBlock

from xray.config import FinetuneConfig
from xray.training.finetune import enable_training
from xray.training.kernels import use_training_kernels

from helpers.numerics import assert_close, output_and_gradients
from helpers.standin_sd import standin_models


def every_kind():
    """A network with each layer kind the kernels replace, LoRA on its last Dense layer."""
    image, embedding, context = keras.Input((6, 6, 32)), keras.Input((16,)), keras.Input((5, 16))
    h = ResBlock(32)([image, embedding])  # KerasCV's: 32 groups.
    h = keras.layers.GroupNormalization(4)(keras.layers.Conv2D(8, 3)(h))
    tokens = keras.layers.LayerNormalization()(keras.layers.Reshape((16, 8))(h))
    tokens = GEGLU(8)(CrossAttention(num_heads=2, head_size=4)(tokens, context=context))
    dense = keras.layers.Dense(4)
    network = keras.Model([image, embedding, context], dense(tokens))
    dense.enable_lora(2, b_initializer="glorot_uniform")  # B is zero until trained; here it is not.
    return network


def replaced(network):
    """The layers whose `call` or `convolution_op` is set on the instance, by type name."""
    return sorted(
        {
            type(layer).__name__
            for layer in network._flatten_layers(include_self=False)
            if "call" in vars(layer) or "convolution_op" in vars(layer)
        }
    )


def test_every_named_layer_kind_is_replaced_and_the_network_computes_the_same():
    network = every_kind()
    rng = np.random.default_rng(0)
    inputs = [tf.constant(rng.standard_normal(shape), tf.float32) for shape in ((2, 6, 6, 32), (2, 16), (2, 5, 16))]
    step = lambda: output_and_gradients(lambda *w: network(inputs), [w.value for w in network.trainable_weights])  # noqa: E731
    expected = tf.function(step)()
    assert replaced(network) == []
    use_training_kernels(network)
    assert replaced(network) == [
        "Conv2D",
        "CrossAttention",
        "Dense",
        "GEGLU",
        "GroupNormalization",
        "LayerNormalization",
        "ResBlock",
    ]
    assert_close(tf.function(step)(), expected, rtol=1e-4, atol=1e-4)


def test_fine_tuning_switches_the_kernels_on_and_off(clip_tokenizer):
    for on in (True, False):
        models = standin_models(clip_tokenizer)
        enable_training(models, FinetuneConfig(full_unet=True, training_kernels=on), init_lora="")
        assert replaced(models.diffusion_model) == (["Conv2D"] if on else [])
