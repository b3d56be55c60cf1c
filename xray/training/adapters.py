"""LoRA adapters on KerasCV's networks for training: enabling them, saving them in diffusers'
layout (`xray.formats.lora_file`), starting from a file, and their merged values.

Keras's `Dense.enable_lora(rank)` adds A (in, r) and B (r, out) beside the frozen kernel W:
y = x (W + A B alpha / r), alpha equal to the rank. PEFT stores the same matrices transposed.
"""

import keras
import numpy as np

from genlab.errors import UserError
from xray.formats.lora_file import merged_kernel, read_adapters, target_layers, write_adapter_file


def add_adapters(network_name, network, rank, groups=("attention",), seed=0):
    """Enables Keras's LoRA of `rank` on the targeted layers (their kernels freeze); returns the
    layers by module name.

    Adapters are float32 whatever dtype the frozen weights are stored in (`build_network`'s
    `frozen`): an update smaller than bfloat16's rounding of a weight would be lost.
    """
    layers = target_layers(network_name, network, groups)
    for index, layer in enumerate(layers.values()):
        if layer.dtype_policy.variable_dtype != "float32":
            layer.dtype_policy = f"mixed_{layer.compute_dtype}"  # New weights float32, computed as before.
        layer.enable_lora(rank, a_initializer=keras.initializers.HeUniform(seed=seed + index))
    return layers


def adapter_tensors(adapters):
    """The adapters' weights in PEFT's layout: {module.lora_A.weight: (r, in), module.lora_B.weight: (out, r)}."""
    tensors = {}
    for module, layer in adapters.items():
        tensors[f"{module}.lora_A.weight"] = np.ascontiguousarray(np.asarray(layer.lora_kernel_a, dtype=np.float32).T)
        tensors[f"{module}.lora_B.weight"] = np.ascontiguousarray(np.asarray(layer.lora_kernel_b, dtype=np.float32).T)
    return tensors


def save_adapters(path, adapters, record):
    """Writes the adapters ({module: layer}) as a diffusers/PEFT LoRA file, with `record` in its metadata."""
    write_adapter_file(path, adapter_tensors(adapters), dict(record, rank=next(iter(adapters.values())).lora_rank))


def merged_values(adapters):
    """What a weight file holds for networks whose adapters ({module: layer}) are enabled, as
    {id(variable): value}: each frozen kernel with its adapter added, by the arithmetic
    `merge_adapters` applies to a saved file, and each adapter matrix left out (None)."""
    values = {}
    tensors = adapter_tensors(adapters)
    for module, layer in adapters.items():
        # Dense._kernel (private, held by setup.py's keras pin) is W once LoRA is on; `kernel` is then W + A B.
        frozen = layer._kernel
        values[id(frozen)] = merged_kernel(
            frozen, tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"]
        )
        values[id(layer.lora_kernel_a)] = values[id(layer.lora_kernel_b)] = None
    return values


def load_adapters_into(adapters, path, flag="--init_lora"):
    """Sets enabled adapters ({module: layer}) to a file's values: the file must have the same modules and rank."""
    values, record = read_adapters(path, flag)
    rank = next(iter(adapters.values())).lora_rank
    if set(values) != set(adapters) or record.get("rank", rank) != rank:
        raise UserError(
            f"{flag}={path} has rank {record.get('rank')} adapters on {len(values)} modules; this run trains "
            f"rank {rank} on {len(adapters)}: match --lora_rank and the target flags to the file"
        )
    for module, (a, b) in values.items():
        adapters[module].lora_kernel_a.assign(a.T)
        adapters[module].lora_kernel_b.assign(b.T)
