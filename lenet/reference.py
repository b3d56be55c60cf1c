"""The reference judge: one LeNet-5, trained once with a fixed seed and shipped with the package.

MNIST score and MNIST FID are only comparable when the same network judges every set of
digits, as TF-GAN's MNIST metrics use one fixed classifier. A LeNet the user trains changes
with every run and machine, so it sorts digits but does not measure them: the metrics in
`summary.json` and the benchmarks come from this network.

The weights are stored as plain arrays (`.npz`, read with `allow_pickle=False`) beside a
JSON record of how they were made (seed, settings, test accuracy, library versions, sha256).
`scripts/make_reference_judge.py` writes a new version; old versions are never overwritten,
so a figure labelled with a version can always be reproduced.
"""

import hashlib
import os

import numpy as np

from genlab.errors import UserError
from genlab.files import atomic_path, read_json, write_json
from lenet.model import build_lenet5, probabilities_and_features

VERSION = "v1"
_FOLDER = os.path.dirname(os.path.abspath(__file__))


def reference_paths(version=VERSION):
    """(weights .npz, record .json) of a reference judge version."""
    stem = os.path.join(_FOLDER, f"reference_judge_{version}")
    return f"{stem}.npz", f"{stem}.json"


def load_reference_judge(version=VERSION):
    """The reference LeNet-5 as a (probabilities, features) model; its record is checked first."""
    weights_path, record_path = reference_paths(version)
    if not os.path.isfile(weights_path) or not os.path.isfile(record_path):
        raise UserError(f"the reference judge {version} is missing ({weights_path}); reinstall the package")
    record = read_json(record_path, how_to_fix="reinstall the package")
    if sha256(weights_path) != record["sha256"]:
        raise UserError(f"{weights_path} does not match the sha256 in {record_path}; reinstall the package")
    model = build_lenet5()
    with np.load(weights_path, allow_pickle=False) as data:
        model.set_weights([data[f"w{i:03d}"] for i in range(len(data.files))])
    return probabilities_and_features(model)


def describe(version=VERSION):
    """One line naming the judge, for summaries and benchmark output."""
    weights_path, record_path = reference_paths(version)
    record = read_json(record_path, how_to_fix="reinstall the package")
    accuracy = f"{record['test_accuracy']:.2%} MNIST test accuracy"
    return f"reference LeNet-5 {version} ({accuracy}, {os.path.basename(weights_path)})"


def save_reference_judge(model, version, record):
    """Writes a trained LeNet-5's weights and `record` as reference judge `version` (never overwrites)."""
    weights_path, record_path = reference_paths(version)
    if os.path.exists(weights_path) or os.path.exists(record_path):
        raise UserError(
            f"reference judge {version} exists already; published versions are never replaced, pick a new one"
        )
    with atomic_path(weights_path) as tmp:
        np.savez(tmp, **{f"w{i:03d}": weight for i, weight in enumerate(model.get_weights())})
    write_json(record_path, dict(record, version=version, sha256=sha256(weights_path)))
    return weights_path, record_path


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
