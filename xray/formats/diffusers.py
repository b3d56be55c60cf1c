"""The diffusers bridge: a Hugging Face Stable Diffusion 1.x checkpoint folder into KerasCV's networks.

    CHECKPOINT/model_index.json
    CHECKPOINT/text_encoder/{config.json, model.safetensors}          transformers' CLIPTextModel
    CHECKPOINT/unet/{config.json, diffusion_pytorch_model.safetensors}  diffusers' UNet2DConditionModel
    CHECKPOINT/vae/{config.json, diffusion_pytorch_model.safetensors}   diffusers' AutoencoderKL
    CHECKPOINT/tokenizer/{vocab.json, merges.txt}
    CHECKPOINT/scheduler/scheduler_config.json

Only `.safetensors` are read: pickled `.bin`/`.ckpt` files can run code when loaded. The
configs are checked against Stable Diffusion 1.x before any tensor is read, and every
tensor's name and shape before any weight is assigned.

The weight mapping is below, one function per network, walking KerasCV's layers in
order beside diffusers' module names. PyTorch stores convolutions as (out, in, kh, kw) and
linear layers as (out, in); Keras as (kh, kw, in, out) and (in, out).

Numerics: KerasCV's U-Net approximates GELU with tanh and every KerasCV group norm uses
epsilon 1e-5, where diffusers uses exact GELU and 1e-6 in the VAE and at each U-Net
transformer's entry. A checkpoint runs with diffusers' numerics (`use_diffusers_numerics`,
applied by `xray.weights`), which makes KerasCV's outputs equal diffusers' to float32 round-off.

This module reads checkpoints and maps tensors; `xray.formats.keras_cv_files` writes KerasCV's
weight files from them, and `xray.weights` loads either. Nothing here imports those.
"""

import gzip
import io
import os

import keras
import numpy as np
from keras import ops

# KerasCV exports none of Stable Diffusion's layers: keras_cv.src, held by setup.py's keras-cv==0.9.0 pin
# (tests/test_private_apis.py).
from keras_cv.src.models.stable_diffusion.attention_block import AttentionBlock
from keras_cv.src.models.stable_diffusion.clip_tokenizer import SimpleTokenizer
from keras_cv.src.models.stable_diffusion.diffusion_model import GEGLU, ResBlock, SpatialTransformer, Upsample
from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D
from keras_cv.src.models.stable_diffusion.resnet_block import ResnetBlock
from keras_cv.src.models.stable_diffusion.text_encoder import CLIPEmbedding, CLIPEncoderLayer

from genlab.errors import UserError
from genlab.files import read_json
from xray.formats.safetensors_file import SafetensorsFile
from xray.sd.networks import assign_in_place
from xray.sd.sampler import NoiseSchedule

COMPONENTS = {  # KerasCV network -> checkpoint sub-folder, its weight file's stem, tensors it does not use.
    "text_encoder": ("text_encoder", "model", ("embeddings.position_ids",)),  # A buffer, not a weight.
    "diffusion_model": ("unet", "diffusion_pytorch_model", ()),
    "decoder": ("vae", "diffusion_pytorch_model", ("encoder.", "quant_conv.")),  # The VAE's encoder half.
    "image_encoder": ("vae", "diffusion_pytorch_model", ("decoder.", "post_quant_conv.")),  # Fine-tuning's.
}
_PICKLE_ENDINGS = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
# What Stable Diffusion 1.x's configs say; a checkpoint that differs is another architecture.
_SD1_CONFIG = {
    "unet": {
        "in_channels": 4,
        "out_channels": 4,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "use_linear_projection": False,
        "addition_embed_type": None,
    },
    "vae": {
        "latent_channels": 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "scaling_factor": 0.18215,
    },
    "text_encoder": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
    },
}
_ABSENT_MEANS = {
    "use_linear_projection": False,
    "addition_embed_type": None,
    "scaling_factor": 0.18215,
    "hidden_act": "quick_gelu",
}  # The libraries' defaults when a config leaves a key out.
_HINTS = {
    ("unet", "cross_attention_dim", 1024): "SD 2.x",
    ("unet", "cross_attention_dim", 2048): "SDXL",
    ("unet", "use_linear_projection", True): "SD 2.x",
    ("unet", "addition_embed_type", "text_time"): "SDXL",
    ("text_encoder", "hidden_size", 1024): "SD 2.x",
    # An inpainting U-Net also reads the mask and the masked image's latents.
    ("unet", "in_channels", 9): (
        "an inpainting checkpoint, not supported; genlab-xray --masks inpaints with SD 1.x's own U-Net"
    ),
}


def open_checkpoint(path):
    """A checked diffusers checkpoint, or a one-line `UserError` saying what is wrong."""
    return DiffusersCheckpoint(path)


class DiffusersCheckpoint:
    def __init__(self, path):
        if path and os.path.isfile(path) and path.endswith(_PICKLE_ENDINGS + (".safetensors",)):
            raise UserError(
                f"--weights_path={path!r} is a single-file checkpoint; the bridge reads a diffusers folder "
                "(unet/, vae/, text_encoder/, tokenizer/, scheduler/): save one with diffusers' save_pretrained"
            )
        if not path or not os.path.isdir(path):
            raise UserError(
                f"--weights=diffusers needs --weights_path=DIR, a diffusers checkpoint folder; {path!r} is not a folder"
            )
        self.path = path
        self.configs = {folder: self.read_config(folder, "config.json") for folder in ("unet", "vae", "text_encoder")}
        self._check_architecture()
        self.weight_files = {
            network: self._find_safetensors(folder, stem) for network, (folder, stem, _) in COMPONENTS.items()
        }

    def tokenizer(self):
        """KerasCV's CLIP tokenizer built from the checkpoint's own merges, checked against its vocab."""
        folder = os.path.join(self.path, "tokenizer")
        merges_path, vocab_path = os.path.join(folder, "merges.txt"), os.path.join(folder, "vocab.json")
        for path in (merges_path, vocab_path):
            if not os.path.isfile(path):
                raise UserError(
                    f"{path} is missing; a Stable Diffusion checkpoint's tokenizer/ holds vocab.json and merges.txt"
                )
        with open(merges_path, "rb") as f:
            tokenizer = SimpleTokenizer(io.BytesIO(gzip.compress(f.read())))  # It reads gzipped merges.
        vocab = read_json(vocab_path, how_to_fix="repair or re-download the checkpoint")
        if vocab != tokenizer.encoder:
            differs = sorted(set(vocab.items()) ^ set(tokenizer.encoder.items()))[:1]
            raise UserError(
                f"{vocab_path} is not CLIP's vocabulary built from merges.txt (first difference: {differs}); "
                "checkpoints with added tokens are not supported"
            )
        return tokenizer

    def noise_schedule(self):
        return NoiseSchedule.from_diffusers_config(
            self.read_config("scheduler", "scheduler_config.json"), source=f"{self.path}/scheduler"
        )

    def load_weights(self, network_name, network):
        """Assigns the checkpoint's tensors to KerasCV's `network` (a name in COMPONENTS).

        Tensors are read one at a time with plain reads (`xray.formats.safetensors_file`), so loading
        holds the network and a single tensor, not a second copy of the whole file.
        """
        path = self.weight_files[network_name]
        try:
            handle = SafetensorsFile(path)
        except (OSError, ValueError, KeyError, TypeError) as error:  # A truncated or foreign file.
            raise UserError(f"{path} is not a readable safetensors file ({type(error).__name__}: {error})") from None
        # transformers 4 saved CLIP under "text_model.", 5 saves it bare.
        rename = (
            (lambda name: name.removeprefix("text_model.")) if network_name == "text_encoder" else (lambda name: name)
        )
        with handle:
            _assign(
                _MAPPINGS[network_name](network),
                _TensorFile(handle, rename),
                path,
                unused_prefixes=COMPONENTS[network_name][2],
            )

    def read_config(self, folder, name):
        path = os.path.join(self.path, folder, name)
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing; is {self.path!r} a diffusers Stable Diffusion checkpoint folder?")
        return read_json(path, how_to_fix="repair or re-download the checkpoint")

    def _check_architecture(self):
        for folder, expected in _SD1_CONFIG.items():
            config = self.configs[folder]
            for key, value in expected.items():
                found = config.get(key, _ABSENT_MEANS.get(key, "absent"))
                if found != value:
                    hint = _HINTS.get((folder, key, found if not isinstance(found, list) else None))
                    what = f" (that is {hint})" if hint else ""
                    raise UserError(
                        f"{self.path} is not a Stable Diffusion 1.x checkpoint: {folder}/config.json has "
                        f"{key}={found!r}{what}, SD 1.x has {value!r}"
                    )

    def _find_safetensors(self, folder, stem):
        directory = os.path.join(self.path, folder)
        for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
            if os.path.isfile(os.path.join(directory, name)):
                return os.path.join(directory, name)
        pickles = [name for name in sorted(os.listdir(directory)) if name.endswith(_PICKLE_ENDINGS)]
        if pickles:
            raise UserError(
                f"{folder}/{pickles[0]} is a pickled PyTorch file, which can run code when loaded; only .safetensors "
                "are read: on a trusted machine re-save the checkpoint with save_pretrained(..., "
                "safe_serialization=True)"
            )
        raise UserError(f"{directory} has no {stem}.safetensors")


class _ErfGEGLU(GEGLU):
    """KerasCV's GEGLU with exact (erf) GELU, as diffusers computes it."""

    def call(self, inputs):
        x, gate = ops.split(self.dense(inputs), 2, axis=-1)
        return x * keras.activations.gelu(gate, approximate=False)


def use_diffusers_numerics(network_name, network):
    """Switches KerasCV's U-Net or decoder to diffusers' GELU and group-norm epsilons, in place.

    Weights are untouched; only how two kinds of layer compute changes. Call before the
    network is first run (its graph is traced then). The text encoders already agree.
    """
    # Layer._flatten_layers: private Keras API, held by setup.py's keras pin (tests/test_private_apis.py).
    for layer in network._flatten_layers():
        if isinstance(layer, GEGLU):
            layer.__class__ = _ErfGEGLU  # Same object and weights, exact GELU in `call`.
        elif isinstance(layer, SpatialTransformer):
            layer.norm.epsilon = 1e-6
        elif isinstance(layer, keras.layers.GroupNormalization) and network_name in ("decoder", "image_encoder"):
            layer.epsilon = 1e-6  # Every VAE group norm.


# The weight mapping: (Keras variable, checkpoint tensor name, Layout) for each weight.


class Layout:
    """How one kind of weight is laid out on each side: to Keras from diffusers, and back."""

    def __init__(self, to_keras, to_diffusers):
        self.to_keras, self.to_diffusers = to_keras, to_diffusers


SAME = Layout(lambda w: w, lambda w: w)  # Biases, norms, embeddings.
LINEAR = Layout(np.transpose, np.transpose)  # (out, in) <-> (in, out).
# (out, in, kh, kw) <-> (kh, kw, in, out).
CONV = Layout(lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))
LINEAR_AS_CONV = Layout(lambda w: w.T[None, None], lambda k: k[0, 0].T)  # diffusers' linear as Keras's 1x1 convolution.


def _dense(layer, name):
    return [(layer.kernel, f"{name}.weight", LINEAR)] + ([(layer.bias, f"{name}.bias", SAME)] if layer.use_bias else [])


def _conv(layer, name):
    conv = layer.conv2d if isinstance(layer, PaddedConv2D) else layer
    return [(conv.kernel, f"{name}.weight", CONV), (conv.bias, f"{name}.bias", SAME)]


def _linear_as_conv(layer, name):
    """diffusers' VAE attention stores 1x1 convolutions as linear layers."""
    return [(layer.conv2d.kernel, f"{name}.weight", LINEAR_AS_CONV), (layer.conv2d.bias, f"{name}.bias", SAME)]


def _norm(layer, name):
    return [(layer.gamma, f"{name}.weight", SAME), (layer.beta, f"{name}.bias", SAME)]


def _unet_resnet(block, name):
    pairs = (
        _norm(block.entry_flow[0], f"{name}.norm1")
        + _conv(block.entry_flow[2], f"{name}.conv1")
        + _dense(block.embedding_flow[1], f"{name}.time_emb_proj")
        + _norm(block.exit_flow[0], f"{name}.norm2")
        + _conv(block.exit_flow[2], f"{name}.conv2")
    )
    if isinstance(block.residual_projection, PaddedConv2D):
        pairs += _conv(block.residual_projection, f"{name}.conv_shortcut")
    return pairs


def _attention(attention, name):
    return (
        _dense(attention.to_q, f"{name}.to_q")
        + _dense(attention.to_k, f"{name}.to_k")
        + _dense(attention.to_v, f"{name}.to_v")
        + _dense(attention.out_proj, f"{name}.to_out.0")
    )


def _spatial_transformer(layer, name):
    block, inner = layer.transformer_block, f"{name}.transformer_blocks.0"
    return (
        _norm(layer.norm, f"{name}.norm")
        + _conv(layer.proj1, f"{name}.proj_in")
        + _norm(block.norm1, f"{inner}.norm1")
        + _attention(block.attn1, f"{inner}.attn1")
        + _norm(block.norm2, f"{inner}.norm2")
        + _attention(block.attn2, f"{inner}.attn2")
        + _norm(block.norm3, f"{inner}.norm3")
        + _dense(block.geglu.dense, f"{inner}.ff.net.0.proj")
        + _dense(block.dense, f"{inner}.ff.net.2")
        + _conv(layer.proj2, f"{name}.proj_out")
    )


def _unet_layer_names():
    """diffusers' names for KerasCV's U-Net layers that hold weights, in `model.layers` order.

    That order is the graph's (the time MLP's second layer comes after conv_in), the same
    order KerasCV's own `.h5` files are matched by.
    """
    names = ["time_embedding.linear_1", "conv_in", "time_embedding.linear_2"]
    for block in range(3):
        for i in range(2):
            names += [f"down_blocks.{block}.resnets.{i}", f"down_blocks.{block}.attentions.{i}"]
        names.append(f"down_blocks.{block}.downsamplers.0.conv")
    names += [
        "down_blocks.3.resnets.0",
        "down_blocks.3.resnets.1",
        "mid_block.resnets.0",
        "mid_block.attentions.0",
        "mid_block.resnets.1",
    ]
    names += [f"up_blocks.0.resnets.{i}" for i in range(3)] + ["up_blocks.0.upsamplers.0"]
    for block in (1, 2, 3):
        for i in range(3):
            names += [f"up_blocks.{block}.resnets.{i}", f"up_blocks.{block}.attentions.{i}"]
        if block < 3:
            names.append(f"up_blocks.{block}.upsamplers.0")
    return names + ["conv_norm_out", "conv_out"]


def _diffusion_model_pairs(model):
    mappers = {
        ResBlock: _unet_resnet,
        SpatialTransformer: _spatial_transformer,
        PaddedConv2D: _conv,
        keras.layers.Dense: _dense,
        keras.layers.GroupNormalization: _norm,
        Upsample: lambda layer, name: _conv(layer.conv, f"{name}.conv"),
    }
    return _walk(model, _unet_layer_names(), mappers)


def _vae_resnet(block, name):
    pairs = (
        _norm(block.norm1, f"{name}.norm1")
        + _conv(block.conv1, f"{name}.conv1")
        + _norm(block.norm2, f"{name}.norm2")
        + _conv(block.conv2, f"{name}.conv2")
    )
    if isinstance(block.residual_projection, PaddedConv2D):
        pairs += _conv(block.residual_projection, f"{name}.conv_shortcut")
    return pairs


def _vae_attention(block, name):
    # Newer diffusers name these to_q/to_k/to_v/to_out.0; `_assign` also accepts the older names.
    return (
        _norm(block.norm, f"{name}.group_norm")
        + _linear_as_conv(block.q, f"{name}.to_q")
        + _linear_as_conv(block.k, f"{name}.to_k")
        + _linear_as_conv(block.v, f"{name}.to_v")
        + _linear_as_conv(block.proj_out, f"{name}.to_out.0")
    )


_VAE_MAPPERS = {
    ResnetBlock: _vae_resnet,
    AttentionBlock: _vae_attention,
    PaddedConv2D: _conv,
    keras.layers.GroupNormalization: _norm,
}  # The VAE's encoder and decoder share their blocks.


def _decoder_pairs(model):
    names = [
        "post_quant_conv",
        "decoder.conv_in",
        "decoder.mid_block.resnets.0",
        "decoder.mid_block.attentions.0",
        "decoder.mid_block.resnets.1",
    ]
    for block in range(4):
        names += [f"decoder.up_blocks.{block}.resnets.{i}" for i in range(3)]
        if block < 3:
            names.append(f"decoder.up_blocks.{block}.upsamplers.0.conv")
    names += ["decoder.conv_norm_out", "decoder.conv_out"]
    return _walk(model, names, _VAE_MAPPERS)


def _image_encoder_pairs(model):
    names = ["encoder.conv_in"]
    for block in range(4):
        names += [f"encoder.down_blocks.{block}.resnets.{i}" for i in range(2)]
        if block < 3:
            names.append(f"encoder.down_blocks.{block}.downsamplers.0.conv")
    names += [
        "encoder.mid_block.resnets.0",
        "encoder.mid_block.attentions.0",
        "encoder.mid_block.resnets.1",
        "encoder.conv_norm_out",
        "encoder.conv_out",
        "quant_conv",
    ]
    return _walk(model, names, _VAE_MAPPERS)


def _clip_layer(layer, name):
    attention = layer.clip_attn
    return (
        _norm(layer.layer_norm1, f"{name}.layer_norm1")
        + _dense(attention.q_proj, f"{name}.self_attn.q_proj")
        + _dense(attention.k_proj, f"{name}.self_attn.k_proj")
        + _dense(attention.v_proj, f"{name}.self_attn.v_proj")
        + _dense(attention.out_proj, f"{name}.self_attn.out_proj")
        + _norm(layer.layer_norm2, f"{name}.layer_norm2")
        + _dense(layer.fc1, f"{name}.mlp.fc1")
        + _dense(layer.fc2, f"{name}.mlp.fc2")
    )


def _text_encoder_pairs(model):
    names = ["embeddings"] + [f"encoder.layers.{i}" for i in range(12)] + ["final_layer_norm"]

    def embeddings(layer, name):
        return [
            (layer.token_embedding.embeddings, f"{name}.token_embedding.weight", SAME),
            (layer.position_embedding.embeddings, f"{name}.position_embedding.weight", SAME),
        ]

    mappers = {CLIPEmbedding: embeddings, CLIPEncoderLayer: _clip_layer, keras.layers.LayerNormalization: _norm}
    return _walk(model, names, mappers)


_MAPPINGS = {
    "text_encoder": _text_encoder_pairs,
    "diffusion_model": _diffusion_model_pairs,
    "decoder": _decoder_pairs,
    "image_encoder": _image_encoder_pairs,
}


def weight_pairs(network_name, network):
    """(Keras variable, diffusers tensor name, diffusers-to-Keras layout change) for every weight
    of one of KerasCV's networks: the mapping that loading, LoRA and export share."""
    return _MAPPINGS[network_name](network)


def _walk(model, names, mappers):
    """Pairs KerasCV's weighted layers, in `model.layers` order, with diffusers' module names."""
    layers = [layer for layer in model.layers if layer.weights]
    if len(layers) != len(names):
        raise RuntimeError(
            f"KerasCV's {model.name} has {len(layers)} weighted layers, the mapping expects {len(names)}"
        )
    pairs = []
    for layer, name in zip(layers, names):
        mapper = mappers.get(type(layer))  # The exact class: a subclass may hold other weights.
        if mapper is None:
            raise RuntimeError(f"no mapping for KerasCV layer {layer.name} ({type(layer).__name__}) at {name}")
        pairs += mapper(layer, name)
    return pairs


_OLD_VAE_NAMES = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


class _TensorFile:
    """A safetensors file's tensors under the names the mapping uses, read only when asked for."""

    def __init__(self, handle, rename):
        self.handle = handle
        self.names = {rename(name): name for name in handle.keys()}

    def shape(self, name):
        return self.handle.shape(self.names[name])

    def get(self, name):
        return np.asarray(self.handle.get(self.names[name]), dtype=np.float32)


def _assign(pairs, tensors, path, unused_prefixes):
    """Checks every tensor's presence and shape before assigning any, so a wrong checkpoint
    leaves the network as it was; then assigns them one by one."""
    found = []
    for variable, name, layout in pairs:
        if name not in tensors.names:
            old = next((name.replace(new, old) for new, old in _OLD_VAE_NAMES.items() if new in name), None)
            if old is None or old not in tensors.names:
                raise UserError(
                    f"{path} lacks tensor {name!r}; the checkpoint is incomplete or not Stable Diffusion 1.x"
                )
            name = old
        shape = tensors.shape(name)
        placeholder = np.broadcast_to(np.float32(0), shape)  # The layout change's shape, without reading the tensor.
        if layout.to_keras(placeholder).shape != tuple(variable.shape):
            raise UserError(
                f"{path}: tensor {name!r} has shape {shape}, KerasCV needs {tuple(variable.shape)} (after layout "
                "change)"
            )
        found.append((variable, name, layout))
    used = {name for _, name, _ in pairs} | {
        name.replace(new, old) for _, name, _ in pairs for new, old in _OLD_VAE_NAMES.items()
    }
    unused = sorted(name for name in set(tensors.names) - used if not name.startswith(unused_prefixes))
    if unused:
        raise UserError(
            f"{path} has {len(unused)} tensor(s) KerasCV's network has no place for, e.g. {unused[0]!r}: not Stable "
            "Diffusion 1.x"
        )
    for variable, name, layout in found:
        assign_in_place(variable, layout.to_keras(tensors.get(name)))
