"""LoRA adapters on KerasCV's Stable Diffusion 1.x networks, kept in diffusers' own file layout.

Keras's `Dense.enable_lora(rank)` adds A (in, r) and B (r, out) beside the frozen kernel W:
y = x (W + A B alpha / r). PEFT, which diffusers uses, stores the same two matrices
transposed, `lora_A.weight` (r, in) and `lora_B.weight` (out, r), under each module's
diffusers name behind a `unet.` or `text_encoder.` prefix:

    unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight
    text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight

Adapters are saved in that layout, so the file this project writes is the file
`StableDiffusionPipeline.load_lora_weights` reads. Alpha equals the rank (a scale of 1, the
default on both sides); a different strength is the scale given at generation time.
The module names come from the bridge's weight mapping, the one map between the two sides.
"""

import hashlib
import json
import os
import types

import keras
import numpy as np
from keras import ops

from genlab.errors import UserError
from genlab.files import atomic_path
from xray.bridge import weight_pairs
from xray.networks import assign_in_place

ARCHITECTURE = "stable-diffusion-1.x"
TARGETS = {  # Which projections get adapters, by network and group.
    "diffusion_model": {"attention": ("to_q", "to_k", "to_v", "to_out.0"), "feed_forward": ("ff.net.0.proj", "ff.net.2")},
    "text_encoder": {"attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
                     "feed_forward": ("mlp.fc1", "mlp.fc2")},
}
PREFIXES = {"diffusion_model": "unet.", "text_encoder": "text_encoder.text_model."}
RECORD_KEY = "genlab_lora"  # The safetensors metadata entry holding the adapters' record (JSON).


def target_layers(network_name, network, groups=("attention", "feed_forward")):
    """{file module name: Dense layer} for the projections of `groups`. Call it before LoRA is
    enabled on them (a LoRA layer's `kernel` is a new tensor, no longer the variable)."""
    suffixes = tuple(f".{suffix}" for group in groups for suffix in TARGETS[network_name][group])
    dense = {id(layer.kernel): layer for layer in network._flatten_layers() if isinstance(layer, keras.layers.Dense)}
    found = {}
    for variable, name, _ in weight_pairs(network_name, network):
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module.endswith(suffixes) and id(variable) in dense:
            found[PREFIXES[network_name] + module] = dense[id(variable)]
    return found


def add_adapters(network_name, network, rank, groups=("attention",), seed=0):
    """Enables Keras's LoRA of `rank` on the targeted layers (their kernels freeze), computed as
    `factored_call` does; returns the layers by module name.

    Adapters are float32 whatever dtype the frozen weights are stored in (`build_network`'s
    `frozen`): an update smaller than bfloat16's rounding of a weight would be lost.
    """
    layers = target_layers(network_name, network, groups)
    for index, layer in enumerate(layers.values()):
        if layer.dtype_policy.variable_dtype != "float32":
            layer.dtype_policy = f"mixed_{layer.compute_dtype}"  # New weights float32, computed as before.
        layer.enable_lora(rank, a_initializer=keras.initializers.HeUniform(seed=seed + index))
        layer.call = types.MethodType(factored_call, layer)
    return layers


def factored_call(self, inputs, training=None):
    """Dense.call for a layer with LoRA on, as PEFT computes it: x W + (x A) B alpha / r.

    Keras's own x (W + A B alpha / r) keeps a full-sized W + A B per layer for the backward
    pass and forms a full-sized gradient for it, only to reduce it to A's and B's; this keeps
    x A and forms their gradients directly. The same function, to float32 round-off.
    """
    adapter = ops.matmul(ops.matmul(inputs, self.lora_kernel_a), self.lora_kernel_b)
    x = ops.add(ops.matmul(inputs, self._kernel), adapter * (self.lora_alpha / self.lora_rank))
    if self.bias is not None:
        x = ops.add(x, self.bias)
    if self.activation is not None:
        x = self.activation(x)
    return x


def adapter_tensors(adapters):
    """The adapters' weights in PEFT's layout: {module.lora_A.weight: (r, in), module.lora_B.weight: (out, r)}."""
    tensors = {}
    for module, layer in adapters.items():
        tensors[f"{module}.lora_A.weight"] = np.ascontiguousarray(np.asarray(layer.lora_kernel_a, dtype=np.float32).T)
        tensors[f"{module}.lora_B.weight"] = np.ascontiguousarray(np.asarray(layer.lora_kernel_b, dtype=np.float32).T)
    return tensors


def save_adapters(path, adapters, record):
    """Writes the adapters as a diffusers/PEFT LoRA safetensors file, with `record` (rank,
    targets, base weights, steps...) as JSON in its metadata."""
    from safetensors.numpy import save_file

    record = dict(record, architecture=ARCHITECTURE, rank=next(iter(adapters.values())).lora_rank)
    with atomic_path(path) as tmp:
        save_file(adapter_tensors(adapters), tmp, metadata={"format": "pt", RECORD_KEY: json.dumps(record, sort_keys=True)})


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
            raise UserError(f"{flag}={path}: tensor {key!r} is not a PEFT LoRA weight (lora_A/lora_B); "
                            "only diffusers' PEFT layout is read")
    adapters = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"} or pair["lora_A"].shape[0] != pair["lora_B"].shape[1]:
            raise UserError(f"{flag}={path}: {module}'s lora_A and lora_B do not pair up (a missing half or two ranks)")
        adapters[module] = (pair["lora_A"], pair["lora_B"])
    ranks = {a.shape[0] for a, _ in adapters.values()}
    if not adapters or len(ranks) != 1 or ranks != {record.get("rank", min(ranks or {0}))}:
        raise UserError(f"{flag}={path}: expected adapters of one rank (its record says {record.get('rank')}), found {sorted(ranks)}")
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
            raise UserError(f"{flag}={path}: module {module!r} is not in KerasCV's SD 1.x networks: "
                            "the adapters were made for another architecture")
        if (a.shape[1], b.shape[0]) != tuple(layer.kernel.shape):
            raise UserError(f"{flag}={path}: {module} is {a.shape[1]}x{b.shape[0]}, the network's layer is "
                            f"{tuple(layer.kernel.shape)}: adapters for another architecture")
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


def merged_values(adapters):
    """What a weight file holds for networks whose adapters ({module: layer}) are enabled, as
    {id(variable): value}: each frozen kernel with its adapter added, by the arithmetic
    `merge_adapters` applies to a saved file, and each adapter matrix left out (None)."""
    values = {}
    tensors = adapter_tensors(adapters)
    for module, layer in adapters.items():
        frozen = layer._kernel  # Keras keeps W here once LoRA is on; `kernel` is then W + A B, by TensorFlow.
        values[id(frozen)] = merged_kernel(frozen, tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"])
        values[id(layer.lora_kernel_a)] = values[id(layer.lora_kernel_b)] = None
    return values


def load_adapters_into(adapters, path, flag="--init_lora"):
    """Sets enabled adapters ({module: layer}) to a file's values: the file must have the same modules and rank."""
    values, record = read_adapters(path, flag)
    rank = next(iter(adapters.values())).lora_rank
    if set(values) != set(adapters) or record.get("rank", rank) != rank:
        raise UserError(f"{flag}={path} has rank {record.get('rank')} adapters on {len(values)} modules; this run trains "
                        f"rank {rank} on {len(adapters)}: match --lora_rank and the target flags to the file")
    for module, (a, b) in values.items():
        adapters[module].lora_kernel_a.assign(a.T)
        adapters[module].lora_kernel_b.assign(b.T)


def describe(path, scale):
    """How a LoRA appears in a weight source: file name, content hash and scale."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return f"LoRA {os.path.basename(path)} (sha256 {digest}) x {scale:g}"
