import csv
import os

import numpy as np
import pytest
from PIL import Image

from genlab.errors import UserError
from lenet.sorting import UNCERTAIN, folder_for, prepare_output_dir, publish, write_sorted_images


def test_sorting_rule():
    probs = np.full(10, 0.01)
    probs[7] = 0.91
    assert folder_for(probs) == "7"
    assert folder_for(probs, min_confidence=0.95) == UNCERTAIN
    assert folder_for(probs, min_confidence=0.91) == "7"


def test_every_image_lands_in_its_predicted_folder_and_csv_matches(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=40)
    intended = np.arange(40) % 10
    rows = write_sorted_images(str(tmp_path), images, probs, min_confidence=0.5, intended_labels=intended)

    files_on_disk = sorted(
        os.path.relpath(os.path.join(d, f), tmp_path).replace(os.sep, "/")
        for d, _, names in os.walk(tmp_path)
        for f in names
        if f.endswith(".png")
    )
    with open(tmp_path / "predictions.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert sorted(r["file"] for r in csv_rows) == files_on_disk and len(files_on_disk) == 40
    for index, row in enumerate(csv_rows):
        expected = str(probs[index].argmax()) if probs[index].max() >= 0.5 else UNCERTAIN
        assert row["file"].split("/")[0] == expected
        assert int(row["predicted_label"]) == probs[index].argmax()
        assert int(row["intended_label"]) == intended[index]
        assert float(row["confidence"]) == pytest.approx(probs[index].max())
        assert [float(row[f"p{d}"]) for d in range(10)] == pytest.approx(probs[index].tolist())
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / row["file"])), images[index, ..., 0])
    assert rows[0]["file"] == csv_rows[0]["file"]


def test_non_empty_output_is_refused_then_replaced_with_overwrite(tmp_path):
    out = tmp_path / "sorted"
    out.mkdir()
    (out / "old.txt").write_text("a previous run")
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        prepare_output_dir(str(out), overwrite=False)
    staging = prepare_output_dir(str(out), overwrite=True)
    (open(os.path.join(staging, "new.txt"), "w")).close()
    assert (out / "old.txt").exists()  # Untouched until the new run is complete.
    publish(staging, str(out))
    assert sorted(os.listdir(out)) == ["new.txt"]
    assert [p for p in os.listdir(tmp_path) if p != "sorted"] == []  # No staging or trash left behind.
