"""The shipped reference judge: its record matches its weights, and it reads real digits."""

import json
import shutil

import numpy as np
import pytest

from genlab.errors import UserError
from genlab.mnist import load_mnist
from lenet import reference
from lenet.model import build_lenet5


def test_reads_real_test_digits_as_its_record_says(mnist_path):
    judge = reference.load_reference_judge()
    _, (x_test, y_test) = load_mnist(mnist_path)
    probabilities, features = judge.predict(x_test[..., None].astype("float32"), batch_size=2000, verbose=0)
    with open(reference.reference_paths()[1]) as f:
        record = json.load(f)
    assert (probabilities.argmax(axis=1) == y_test).mean() == pytest.approx(record["test_accuracy"], abs=5e-4)
    assert record["test_accuracy"] >= 0.99 and features.shape == (10000, 84)
    assert reference.describe().startswith(f"reference LeNet-5 {reference.VERSION} (99.")


def test_altered_weights_and_republished_versions_are_refused(tmp_path, monkeypatch):
    weights, record = reference.reference_paths()
    shutil.copy(weights, tmp_path / "reference_judge_v1.npz")
    shutil.copy(record, tmp_path / "reference_judge_v1.json")
    monkeypatch.setattr(reference, "_FOLDER", str(tmp_path))
    with pytest.raises(UserError, match="published versions are never replaced"):
        reference.save_reference_judge(build_lenet5(), "v1", {"test_accuracy": 0.5})
    with np.load(tmp_path / "reference_judge_v1.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["w000"] = arrays["w000"] + 1.0
    np.savez(tmp_path / "reference_judge_v1.npz", **arrays)
    with pytest.raises(UserError, match="does not match the sha256"):
        reference.load_reference_judge()
