"""notebooks/labs.ipynb runs top to bottom in a real Jupyter kernel, on a tiny budget.

As papermill does, a cell after the one tagged `parameters` overrides the budgets; local
MNIST and CLIP's tokenizer come in through `MNIST_NPZ` and `CLIP_BPE_PATH`, the variables
a user would set, and Stable Diffusion runs with random weights at 128 px. There are no
REAL_XRAYS: the X-ray lab runs on the public set the notebook writes, from a local file in
MedMNIST's layout.
"""

import json
import os
import zipfile

import pytest

from genlab.files import read_csv

from helpers.checks import REPO, import_peer
from helpers.image_folders import write_medmnist_fixture

NOTEBOOK = os.path.join(REPO, "notebooks", "labs.ipynb")
TINY_BUDGET = """
GAN_EPOCHS = 1
GAN_CONDITIONAL = True
GAN_NUM_TRAIN_IMAGES = 512
LENET_EPOCHS = 1
LENET_NUM_TRAIN_IMAGES = 2000
DIGITS_TO_SORT = 100
XRAY_WEIGHTS = "random"
XRAY_IMAGE_SIZE = 128
XRAY_STEPS = 2
XRAY_IMAGES_PER_PROMPT = 1
FINETUNE_STEPS = 2
VARY_IMAGES_PER_CLASS = 2
JUDGE_EPOCHS = 1
"""


@pytest.mark.slow
def test_notebook_runs_both_labs(tmp_path, monkeypatch, mnist_path, clip_bpe_path):
    nbformat, nbclient = import_peer("nbformat"), import_peer("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    medmnist = write_medmnist_fixture(tmp_path / "pneumoniamnist_128.npz", size=128)
    budget = TINY_BUDGET + f'REAL_XRAYS = ""\nMEDMNIST_PATH = {str(medmnist)!r}\n'
    notebook.cells.insert(parameters[0] + 1, nbformat.v4.new_code_cell(budget.strip()))
    monkeypatch.setenv("MNIST_NPZ", mnist_path)
    monkeypatch.setenv("CLIP_BPE_PATH", clip_bpe_path)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")

    # Raises CellExecutionError, naming the cell, if any cell fails.
    nbclient.NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    work = tmp_path / "runs" / "colab"
    with open(work / "sorted" / "summary.json") as f:
        summary = json.load(f)
    assert summary["generated"]["count"] == 100 and summary["conditional"]
    assert len(list(work.glob("xray/*/*.png"))) == 6  # One image for each built-in class.
    assert "CC BY 4.0" in (work / "public_xrays" / "SOURCE.md").read_text()
    adapted = sorted(str(p.relative_to(work / "xray_adapted")) for p in work.glob("xray_adapted/*/*.png"))
    assert adapted == ["normal/normal_0000.png", "pneumonia/pneumonia_0000.png"]  # The public set's classes.
    varied = read_csv(work / "xray_varied" / "metadata.csv")  # Two variations of each class's real images.
    assert [(row["class_name"], row["source"].split("/")[0], row["strength"]) for row in varied] == [
        ("normal", "normal", "0.5"),
        ("normal", "normal", "0.5"),
        ("pneumonia", "pneumonia", "0.5"),
        ("pneumonia", "pneumonia", "0.5"),
    ]
    assert json.loads((work / "xray_judge" / "summary.json").read_text())["classes"] == ["normal", "pneumonia"]
    assert (work / "xray_lora_diffusers" / "pytorch_lora_weights.safetensors").is_file()
    with zipfile.ZipFile(tmp_path / "runs" / "colab.zip") as archive:
        assert "gan/generator.keras" in archive.namelist()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "Runtime: cpu" in text or "Runtime: gpu" in text
    assert "MNIST score" in text and "real MNIST" in text  # The metrics table.
    assert "RANDOM WEIGHTS" in text  # Random Stable Diffusion says so.
    assert "classes: ['chest_cardiomegaly'" in text  # The X-ray folder loads as a dataset.
    assert "FID real floor" in text  # Judged against the real folder.
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    # GAN grid, loss and D-output curves, LeNet's confusion matrix, 4 sorting figures, X-ray grid,
    # fine-tuning's loss curve and sample rows, the adapted and the varied sets' grids, 3 judge figures.
    assert len(images) == 16
