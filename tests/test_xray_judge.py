"""The X-ray judge on folders with known answers: shapes stand in for X-ray classes."""

import json
import os
import shutil

import numpy as np
import pytest

from genlab.files import read_csv
from image_folders import SHAPES, make_noise_folder, make_shapes_folder
from programs import run_program
from xray.config import JudgeConfig
from xray.judge import judge_dataset

SMALL = ["--image_size=32", "--epochs=12", "--batch_size=16"]
TRAINS = pytest.mark.slow  # Trains the judge's classifier (twice with TSTR).


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("real"), per_class=40, seed=0)


@pytest.fixture(scope="module")
def judged_copy(tmp_path_factory, real):
    """The program end to end on a synthetic set identical to the real one; its classifier is reused below."""
    synthetic = tmp_path_factory.mktemp("synthetic") / "copy"
    shutil.copytree(real, synthetic)
    out = tmp_path_factory.mktemp("judge") / "out"
    result = run_program("scripts.judge_xrays", [f"--real={real}", f"--synthetic={synthetic}", f"--output_dir={out}", *SMALL])
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@TRAINS
def test_identical_sets_score_like_real_images(judged_copy, real):
    out, stdout = judged_copy
    assert sorted(os.listdir(out)) == ["classifier.json", "classifier.keras", "confusion_matrix.png", "convincing.png",
                                       "metrics.png", "predictions.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classifier"]["held_out_accuracy"] >= 0.9  # Shapes are easy: the judge must have learnt them.
    # The synthetic images are the real ones, so the judge scores them exactly as it scores the real set.
    import keras
    from xray.image_folder import read_grayscale_images

    classifier = keras.saving.load_model(out / "classifier.keras")
    paths = [os.path.join(real, shape, name) for shape in SHAPES for name in sorted(os.listdir(os.path.join(real, shape)))]
    labels = np.repeat(np.arange(len(SHAPES)), 40)
    real_accuracy = (classifier.predict(read_grayscale_images(paths, 32), verbose=0).argmax(1) == labels).mean()
    assert summary["synthetic"]["accuracy_vs_intended"] == pytest.approx(real_accuracy)
    for name in ["overall", *SHAPES]:
        distance = summary["distances"][name]
        assert abs(distance["fid"]) < 1e-4 * distance["fid_real_floor"]
    assert summary["tstr"]["train_on_synthetic_accuracy"] >= 0.9
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 120 and rows[0]["file"] == "circle/circle_000.png" and rows[0]["intended_class"] == "circle"
    assert sum(float(rows[0][f"p_{shape}"]) for shape in SHAPES) == pytest.approx(1.0, abs=1e-3)
    assert "FID real floor" in stdout and "Train on synthetic, test on real" in stdout


@TRAINS
def test_images_filed_under_random_classes_score_at_chance(tmp_path, judged_copy, real):
    out, _ = judged_copy
    rng = np.random.default_rng(7)
    synthetic = make_shapes_folder(tmp_path / "shuffled", per_class=40, seed=1, label_of=lambda *_: SHAPES[rng.integers(3)])
    summary = judge_dataset(real, synthetic, str(tmp_path / "out"), JudgeConfig(), classifier_path=str(out / "classifier.keras"), verbose=0)
    assert 0.15 < summary["synthetic"]["accuracy_vs_intended"] < 0.55  # Chance is 1/3.
    assert summary["tstr"]["train_on_synthetic_accuracy"] < 0.6 < summary["tstr"]["train_on_real_accuracy"]
    assert not os.path.exists(tmp_path / "out" / "classifier.keras")  # Reused, not retrained.


@TRAINS
def test_noise_is_far_above_the_real_floor(tmp_path, judged_copy, real):
    out, _ = judged_copy
    synthetic = make_noise_folder(tmp_path / "noise", per_class=40)
    summary = judge_dataset(real, synthetic, str(tmp_path / "out"), JudgeConfig(tstr=False),
                            classifier_path=str(out / "classifier.keras"), verbose=0)
    overall = summary["distances"]["overall"]
    assert overall["fid"] > 5 * overall["fid_real_floor"] and overall["kid"] > 5 * abs(overall["kid_real_floor"])
    assert "tstr" not in summary


@pytest.mark.slow  # Builds a keras.applications network.
def test_a_backbone_with_local_weights(tmp_path, real):
    import keras

    weights = tmp_path / "mobilenet_notop.weights.h5"
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg").save_weights(weights)
    config = JudgeConfig(image_size=32, backbone="mobilenet_v3_small", backbone_weights=str(weights), epochs=1, tstr=False)
    summary = judge_dataset(real, real, str(tmp_path / "out"), config, verbose=0)
    assert summary["classifier"]["backbone"] == "mobilenet_v3_small"
    assert json.loads((tmp_path / "out" / "classifier.json").read_text())["config"]["backbone"] == "mobilenet_v3_small"


def _bad_folders(tmp_path, case):
    real = make_shapes_folder(tmp_path / "real", per_class=3)
    synthetic = tmp_path / "synthetic"
    if case == "no common class":
        make_noise_folder(synthetic, 2, classes=("knee",))
    elif case == "empty class":
        make_shapes_folder(synthetic, 2)
        (synthetic / "hexagon").mkdir()
    elif case == "unreadable image":
        make_shapes_folder(synthetic, 2)
        (synthetic / "circle" / "broken.png").write_bytes(b"\x89PNG broken")
    elif case == "class the real folder lacks":
        make_noise_folder(synthetic, 2, classes=("circle", "hexagon"))
    return real, synthetic


@pytest.mark.parametrize("case, message", [
    ("no common class", "--real and --synthetic share no class"),
    ("empty class", "hexagon (--synthetic) holds no PNG or JPEG images"),
    ("unreadable image", "broken.png is not a readable PNG or JPEG image"),
    ("class the real folder lacks", "synthetic class 'hexagon' has no folder under --real"),
])
def test_bad_folders_get_one_line_and_leave_nothing(tmp_path, case, message):
    real, synthetic = _bad_folders(tmp_path, case)
    out = tmp_path / "out"
    result = run_program("scripts.judge_xrays", [f"--real={real}", f"--synthetic={synthetic}", f"--output_dir={out}", *SMALL])
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
