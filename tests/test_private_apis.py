"""The private Keras and KerasCV APIs the project relies on, each checked for what the code
expects of it, so that a new release that moves one fails here by name rather than somewhere
deep in training. setup.py's pins (keras<3.16, keras-cv==0.9.0) hold them."""

import inspect

import keras
import numpy as np


def test_flatten_layers_walks_nested_layers():  # xray.training.kernels, xray.formats.lora_file, .diffusers
    inner = keras.Sequential([keras.layers.Dense(2, name="deep")])
    model = keras.Sequential([keras.Input((3,)), inner])
    assert "deep" in [layer.name for layer in model._flatten_layers(include_self=False)]
    assert model in list(model._flatten_layers())


def test_lora_keeps_the_frozen_kernel_as_underscore_kernel():  # .training.adapters, .kernels.lora, .convolution
    for layer, shape in ((keras.layers.Dense(4), (2, 3)), (keras.layers.Conv2D(4, 3), (1, 5, 5, 3))):
        layer(np.zeros(shape, "float32"))
        frozen = layer._kernel
        assert frozen is layer.kernel  # Without LoRA, `kernel` is the variable itself.
        layer.enable_lora(2, b_initializer="ones")
        assert layer._kernel is frozen and not layer._kernel.trainable
        assert not np.allclose(np.asarray(layer.kernel), np.asarray(frozen))  # `kernel` is now W + A B.


def test_model_keeps_its_own_variables_apart():  # xray.formats.keras_cv_files writes them as KerasCV does
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert model._trainable_variables == [] and model._non_trainable_variables == []


def test_convolution_op_takes_inputs_and_kernel():  # xray.training.kernels.convolution replaces it
    assert list(inspect.signature(keras.layers.Conv2D.convolution_op).parameters) == ["self", "inputs", "kernel"]


def test_symbolic_build_is_the_hook_fit_calls():  # genlab.distribute.PrebuiltModel skips it
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert "_maybe_symbolic_build" in inspect.getsource(TensorFlowTrainer.fit)


def test_reduce_per_replica_is_where_the_trainer_takes_it():  # xray.training.trainer
    from keras.src.backend.tensorflow.trainer import reduce_per_replica

    assert list(inspect.signature(reduce_per_replica).parameters)[:3] == ["values", "strategy", "reduction"]


def test_legacy_h5_attribute_helpers():  # xray.formats.keras_cv_files reads and writes KerasCV's kcv_*.h5
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import load_attributes_from_hdf5_group, save_attributes_to_hdf5_group

    with h5py.File("names.h5", "w", driver="core", backing_store=False) as f:
        save_attributes_to_hdf5_group(f, "layer_names", [b"a", b"b"])
        assert list(load_attributes_from_hdf5_group(f, "layer_names")) == ["a", "b"]


def test_keras_cv_stable_diffusion_internals():  # xray.sd, xray.formats.diffusers, xray.training.kernels
    from keras_cv.src.models.stable_diffusion import attention_block, constants, diffusion_model, text_encoder

    assert len(constants._ALPHAS_CUMPROD) == 1000  # The schedule xray.sd.sampler samples with.
    attention = diffusion_model.CrossAttention(num_heads=2, head_size=4)
    assert {"num_heads", "head_size", "scale"} <= set(vars(attention))
    for name in ("to_q", "to_k", "to_v", "out_proj"):
        assert isinstance(getattr(attention, name), keras.layers.Layer)
    geglu = diffusion_model.GEGLU(8)
    assert geglu.output_dim == 8 and isinstance(geglu.dense, keras.layers.Dense)
    block = diffusion_model.ResBlock(8)
    assert {"entry_flow", "embedding_flow", "exit_flow"} <= set(vars(block))
    assert attention_block.AttentionBlock and text_encoder.CLIPEmbedding and text_encoder.CLIPEncoderLayer
