"""genlab-xray-data as a user runs it: a MedMNIST file or a Hugging Face folder in, class folders
out, the licence and citation printed; bad input gets one line and leaves nothing."""

import numpy as np
import pytest

from helpers.image_folders import hugging_face_folder, write_medmnist_fixture
from helpers.programs import run_program


def test_a_medmnist_file_becomes_split_class_folders(tmp_path):
    source = write_medmnist_fixture(tmp_path / "pneumoniamnist_64.npz", size=64)
    out = tmp_path / "pneumonia"
    result = run_program(
        "scripts.xray_data",
        ["--source=medmnist:pneumoniamnist", "--size=64", f"--medmnist_path={source}", f"--output_dir={out}"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["SOURCE.md", "counts.csv", "test", "train", "val"]
    assert len(list(out.glob("*/*/*.png"))) == 16
    assert "Wrote 16 images" in result.stdout and "Licence: CC BY 4.0" in result.stdout
    assert "Kermany" in result.stdout and "Traceback" not in result.stderr


def test_a_hugging_face_folder_becomes_split_class_folders(tmp_path):
    folder = hugging_face_folder(tmp_path / "hf")
    result = run_program("scripts.xray_data", [f"--source=hf:{folder}", f"--output_dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["SOURCE.md", "counts.csv", "test", "train", "val"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source=kaggle:chest"], "--source=kaggle:chest is not a source"),
        (["--source=medmnist:pneumoniamnist", "--size=100"], "--size=100: MedMNIST+ comes at 28, 64, 128, 224 px"),
        (["--source=medmnist:pneumoniamnist", "--medmnist_path=/nonexistent.npz"], "is not a file"),
        (["--source=medmnist:pneumoniamnist", "--medmnist_path=BAD"], "it is not a MedMNIST .npz"),
        (["--source=hf:HF"], "needs one image column and one class-label column"),
        (["--source=medmnist:chestmnist"], "class folders need one label per image"),
    ],
)
def test_bad_input_gets_one_line_and_leaves_nothing(tmp_path, args, message):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    if "--source=hf:HF" in args:
        args = [f"--source=hf:{hugging_face_folder(tmp_path / 'hf', labels='integer')}"]
    args = [arg.replace("BAD", str(tmp_path / "bad.npz")) for arg in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_program("scripts.xray_data", [*args, f"--output_dir={tmp_path / 'out'}"])
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # Neither the folder nor a hidden one.
