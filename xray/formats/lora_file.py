"""LoRA adapter files for KerasCV's Stable Diffusion 1.x networks, in diffusers' own layout: reading,
writing, merging into a network's kernels.

Keras's `Dense.enable_lora(rank)` adds A (in, r) and B (r, out) beside the frozen kernel W:
y = x (W + A B alpha / r). PEFT, which diffusers uses, stores the same two matrices
transposed, `lora_A.weight` (r, in) and `lora_B.weight` (out, r), under each module's
diffusers name behind a `unet.` or `text_encoder.` prefix:

    unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight
    text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight

Adapters (`xray.training.adapters`) are saved in that layout, so the file this project writes is the file
`StableDiffusionPipeline.load_lora_weights` reads. Alpha equals the rank (a scale of 1, the
default on both sides); a different strength is the scale given at generation time.
The module names come from the bridge's weight mapping, the one map between the two sides.
"""

import json
import os

import keras
import numpy as np

from genlab.errors import UserError
from genlab.files import atomic_path, file_digest
from xray.formats.diffusers import weight_pairs
from xray.sd.networks import assign_in_place

ARCHITECTURE = "stable-diffusion-1.x"
TARGETS = {  # Which projections get adapters, by network and group.
    "diffusion_model": {
        "attention": ("to_q", "to_k", "to_v", "to_out.0"),
        "feed_forward": ("ff.net.0.proj", "ff.net.2"),
    },
    "text_encoder": {
        "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
        "feed_forward": ("mlp.fc1", "mlp.fc2"),
    },
}
PREFIXES = {"diffusion_model": "unet.", "text_encoder": "text_encoder.text_model."}
RECORD_KEY = "genlab_lora"  # The safetensors metadata entry holding the adapters' record (JSON).


def target_layers(network_name, network, groups=("attention", "feed_forward")):
    """{file module name: Dense layer} for the projections of `groups`. Call it before LoRA is
    enabled on them (a LoRA layer's `kernel` is a new tensor, no longer the variable)."""
    suffixes = tuple(f".{suffix}" for group in groups for suffix in TARGETS[network_name][group])
    # Layer._flatten_layers: private Keras API, held by setup.py's keras pin (tests/test_private_apis.py).
    layers = network._flatten_layers()
    dense = {id(layer.kernel): layer for layer in layers if isinstance(layer, keras.layers.Dense)}
    found = {}
    for variable, name, _ in weight_pairs(network_name, network):
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module.endswith(suffixes) and id(variable) in dense:
            found[PREFIXES[network_name] + module] = dense[id(variable)]
    return found


def write_adapter_file(path, tensors, record):
    """Writes PEFT-layout adapter tensors ({module.lora_A.weight: (r, in), ...}) as a diffusers LoRA
    safetensors file, with `record` (rank, targets, base weights, steps...) as JSON in its metadata."""
    from safetensors.numpy import save_file

    metadata = {"format": "pt", RECORD_KEY: json.dumps(dict(record, architecture=ARCHITECTURE), sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def read_adapters(path, flag="--lora"):
    """({module: (A (r, in), B (out, r))}, record) from a LoRA file, checked for PEFT's layout and one rank."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise UserError(f"{flag}={path}: no such file; pass a LoRA .safetensors file from genlab-xray-finetune")
    try:
        with safe_open(path, framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own types for a truncated or foreign file.
        raise UserError(f"{flag}={path} is not a readable safetensors file ({error})") from None
    record = json.loads(metadata.get(RECORD_KEY, "{}"))
    if record.get("architecture", ARCHITECTURE) != ARCHITECTURE:
        raise UserError(f"{flag}={path} holds adapters for {record['architecture']}, not {ARCHITECTURE}")
    pairs = {}
    for key in tensors:
        for part in ("lora_A", "lora_B"):
            if key.endswith(f".{part}.weight"):
                pairs.setdefault(key.removesuffix(f".{part}.weight"), {})[part] = tensors[key].astype(np.float32)
                break
        else:
            raise UserError(
                f"{flag}={path}: tensor {key!r} is not a PEFT LoRA weight (lora_A/lora_B); "
                "only diffusers' PEFT layout is read"
            )
    adapters = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"} or pair["lora_A"].shape[0] != pair["lora_B"].shape[1]:
            raise UserError(f"{flag}={path}: {module}'s lora_A and lora_B do not pair up (a missing half or two ranks)")
        adapters[module] = (pair["lora_A"], pair["lora_B"])
    ranks = sorted({a.shape[0] for a, _ in adapters.values()})
    one_rank = len(ranks) == 1
    recorded = record.get("rank", ranks[0] if one_rank else None)  # A file from diffusers has no record.
    if not one_rank or ranks != [recorded]:
        raise UserError(f"{flag}={path}: expected adapters of one rank (its record says {recorded}), found {ranks}")
    return adapters, record


def _layers_for(adapters, networks, path, flag):
    """Each adapter's Dense layer in `networks` ({name: network}), checked against its shape."""
    layers = {}
    for name, network in networks.items():
        if name in PREFIXES:
            layers.update(target_layers(name, network))
    found = {}
    for module, (a, b) in adapters.items():
        layer = layers.get(module)
        if layer is None:
            raise UserError(
                f"{flag}={path}: module {module!r} is not in KerasCV's SD 1.x networks: "
                "the adapters were made for another architecture"
            )
        if (a.shape[1], b.shape[0]) != tuple(layer.kernel.shape):
            raise UserError(
                f"{flag}={path}: {module} is {a.shape[1]}x{b.shape[0]}, the network's layer is "
                f"{tuple(layer.kernel.shape)}: adapters for another architecture"
            )
        found[module] = layer
    return found


def merge_adapters(networks, path, scale=1.0, flag="--lora"):
    """Adds `scale` x the file's adapters to the networks' kernels in place (W += scale A B).

    Every module is checked before any kernel changes. Merged, they cost nothing per step.
    """
    adapters, _ = read_adapters(path, flag)
    layers = _layers_for(adapters, networks, path, flag)
    for module, (a, b) in adapters.items():
        assign_in_place(layers[module].kernel, merged_kernel(layers[module].kernel, a, b, scale))


def merged_kernel(kernel, a, b, scale=1.0):
    """W + scale A B in float32, from PEFT's lora_A (r, in) and lora_B (out, r)."""
    return np.asarray(kernel, dtype=np.float32) + scale * (a.T @ b.T)


def describe(path, scale):
    """How a LoRA appears in a weight source: file name, content hash and scale."""
    return f"LoRA {os.path.basename(path)} (sha256 {file_digest(path)[:12]}) x {scale:g}"
