"""Resume points of fine-tuning: the trainable weights, the optimizer's state and the batches done."""

import glob
import os
import re

import numpy as np

from genlab.errors import UserError
from genlab.files import atomic_path

_STEP_FILE = re.compile(r"step_(\d+)\.(npz|png)$")


def step_files(directory, extension):
    """[(step, path)] of the `step_NNNNNN.<extension>` files in `directory`, by step."""
    found = [
        (int(m.group(1)), path)
        for path in glob.glob(os.path.join(directory, f"step_*.{extension}"))
        if (m := _STEP_FILE.search(path))
    ]
    return sorted(found)


def save_checkpoint(directory, model, steps, keep=1):
    """The trainable weights and the optimizer's state, with the batches done; only the newest
    `keep` checkpoints stay (each holds the optimizer's state: twice the trained weights)."""
    os.makedirs(directory, exist_ok=True)
    arrays = {f"trainable_{i}": np.asarray(v) for i, v in enumerate(model.trainable_variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    path = os.path.join(directory, f"step_{steps:06d}.npz")
    with atomic_path(path) as tmp:
        np.savez(tmp, steps=np.int64(steps), **arrays)
    for _, old in step_files(directory, "npz")[:-keep]:
        os.remove(old)


def latest_checkpoint(directory):
    """(batches done, path) of the newest checkpoint, or (0, None)."""
    found = step_files(directory, "npz")
    return found[-1] if found else (0, None)


def restore_checkpoint(path, model):
    with np.load(path, allow_pickle=False) as saved:
        variables = list(model.trainable_variables)
        optimizer_variables = list(model.optimizer.variables)
        if sum(k.startswith("trainable_") for k in saved.files) != len(variables):
            raise UserError(
                f"{path} was written by a run that trained other weights; use a new --output_dir, "
                "or the flags that run used"
            )
        if sum(k.startswith("optimizer_") for k in saved.files) != len(optimizer_variables):
            raise UserError(
                f"{path} was written by a run with another optimizer state (--ema_decay, --gradient_accumulation); "
                "use a new --output_dir, or the flags that run used"
            )
        for i, variable in enumerate(variables):
            variable.assign(saved[f"trainable_{i}"])
        for i, variable in enumerate(optimizer_variables):
            variable.assign(saved[f"optimizer_{i}"])
        return int(saved["steps"])
