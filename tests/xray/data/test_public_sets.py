"""Public sets as class folders: MedMNIST's .npz (a fixture in its exact layout; nothing downloads)
and Hugging Face datasets (a tiny save_to_disk folder)."""

import numpy as np
import pytest
from PIL import Image

from genlab.errors import UserError
from genlab.files import file_digest, read_csv
from xray.data import public_sets
from xray.data.public_sets import (
    download_medmnist,
    parse_source,
    read_hugging_face,
    read_medmnist,
    write_public_set,
)

from helpers.image_folders import PUBLIC_SET_COUNTS as COUNTS
from helpers.image_folders import hugging_face_folder, write_medmnist_fixture


def test_medmnist_is_written_as_split_class_folders_with_its_licence(tmp_path):
    source = write_medmnist_fixture(tmp_path / "pneumoniamnist.npz")
    counts = write_public_set(read_medmnist("pneumoniamnist", str(source)), tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["SOURCE.md", "counts.csv", "test", "train", "val"]
    with np.load(source) as data:
        for split, (normal, pneumonia) in COUNTS.items():
            assert sorted(p.name for p in (out / split).iterdir()) == ["normal", "pneumonia"]
            assert len(list((out / split / "normal").glob("*.png"))) == normal
            assert len(list((out / split / "pneumonia").glob("*.png"))) == pneumonia
            for index, label in enumerate(data[f"{split}_labels"].reshape(-1)):
                name = ("normal", "pneumonia")[label]
                written = np.asarray(Image.open(out / split / name / f"{name}_{index:05d}.png"))
                np.testing.assert_array_equal(written, data[f"{split}_images"][index])
    assert counts == [
        {"split": split, "class": name, "images": n}
        for split, pair in COUNTS.items()
        for name, n in zip(("normal", "pneumonia"), pair)
    ]
    assert [int(row["images"]) for row in read_csv(out / "counts.csv")] == [row["images"] for row in counts]
    source_md = (out / "SOURCE.md").read_text()
    assert "CC BY 4.0" in source_md and "Kermany" in source_md and "MedMNIST v2" in source_md


def test_rgb_medmnist_images_stay_rgb(tmp_path):
    source = write_medmnist_fixture(tmp_path / "rgb.npz", size=64, rgb=True)
    write_public_set(read_medmnist("pneumoniamnist", str(source)), tmp_path / "out")
    image = Image.open(next((tmp_path / "out" / "train" / "normal").glob("*.png")))
    assert image.mode == "RGB" and image.size == (64, 64)


@pytest.mark.parametrize(
    "source, message",
    [
        ("pneumoniamnist", "is not a source: use medmnist:NAME"),
        ("kaggle:chest", "is not a source"),
        ("medmnist:", "is not a source"),
        ("medmnist:octmnist", "MedMNIST X-ray sets here are pneumoniamnist"),
    ],
)
def test_unknown_sources_are_named(source, message):
    with pytest.raises(UserError, match=message):
        parse_source(source)


def test_a_file_in_another_layout_is_named(tmp_path):
    np.savez(tmp_path / "other.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(UserError, match="lacks train_images, train_labels, .*: it is not a MedMNIST .npz"):
        read_medmnist("pneumoniamnist", str(tmp_path / "other.npz"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UserError, match="is not a readable .npz file"):
        read_medmnist("pneumoniamnist", str(tmp_path / "text.npz"))
    source = write_medmnist_fixture(tmp_path / "labels.npz")
    with np.load(source) as data:
        arrays = dict(data)
    arrays["test_labels"][0] = 7
    np.savez(tmp_path / "labels.npz", **arrays)
    with pytest.raises(UserError, match="test_labels go beyond pneumoniamnist's 2 classes"):
        read_medmnist("pneumoniamnist", str(tmp_path / "labels.npz"))


def test_a_folder_with_files_is_refused_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    public_set = read_medmnist("pneumoniamnist", str(write_medmnist_fixture(tmp_path / "p.npz")))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="already holds files"):
        write_public_set(public_set, tmp_path / "full")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(public_sets, "source_text", fail)  # After every image is written.
    with pytest.raises(OSError):
        write_public_set(public_set, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "p.npz"]


def test_downloads_are_checked_against_the_published_md5(tmp_path, monkeypatch):
    """keras.utils.get_file fetches a file:// address here, as it fetches Zenodo's https one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    source = write_medmnist_fixture(tmp_path / "mirror.npz")
    origin = source.as_uri()
    with pytest.raises(UserError, match="does not match MedMNIST's published MD5 .* it was deleted: run again"):
        download_medmnist("pneumoniamnist", 28, origin=origin)
    assert not list((tmp_path / "keras").rglob("*.npz"))

    published = public_sets.MEDMNIST_SETS["pneumoniamnist"]
    monkeypatch.setitem(
        public_sets.MEDMNIST_SETS,
        "pneumoniamnist",
        public_sets.MedMnistSet(**{**published.__dict__, "md5": {28: file_digest(source, "md5")}}),
    )
    path = download_medmnist("pneumoniamnist", 28, origin=origin)
    assert path.endswith("pneumoniamnist.npz") and file_digest(path, "md5") == file_digest(source, "md5")
    with pytest.raises(UserError, match="could not download .*--medmnist_path=FILE"):
        download_medmnist("pneumoniamnist", 64, origin=(tmp_path / "absent.npz").as_uri())
    with pytest.raises(UserError, match="MedMNIST\\+ comes at 28, 64, 128, 224 px"):
        download_medmnist("pneumoniamnist", 100)


def test_a_hugging_face_folder_is_written_with_its_splits_and_label_names(tmp_path):
    folder = hugging_face_folder(tmp_path / "hf")
    public_set = read_hugging_face(str(folder))
    assert public_set.class_names == ["normal", "pneumonia_viral"]  # Made safe, as the generator's are.
    counts = write_public_set(public_set, tmp_path / "out")
    assert {(row["split"], row["class"]): row["images"] for row in counts} == {
        ("train", "normal"): 3,
        ("train", "pneumonia_viral"): 2,
        ("val", "normal"): 1,  # "validation" is val, as MedMNIST names it.
        ("val", "pneumonia_viral"): 1,
        ("test", "normal"): 2,
        ("test", "pneumonia_viral"): 1,
    }
    for name, level in (("normal", 40), ("pneumonia_viral", 140)):
        for path in (tmp_path / "out" / "train" / name).glob("*.png"):
            assert np.asarray(Image.open(path)).tolist() == np.full((20, 24), level).tolist()
    assert "not stated by the dataset" in (tmp_path / "out" / "SOURCE.md").read_text()


def test_a_hugging_face_set_without_a_class_label_column_is_named(tmp_path):
    folder = hugging_face_folder(tmp_path / "hf", labels="integer")
    with pytest.raises(UserError, match=r"needs one image column and one class-label column; .*label \(Value\)"):
        read_hugging_face(str(folder))


def test_multi_label_sets_are_named(tmp_path):
    with pytest.raises(UserError, match="hf:.* is multi-label .*class folders need one label per image"):
        read_hugging_face(str(hugging_face_folder(tmp_path / "hf", labels="several")))
    with pytest.raises(UserError, match="is multi-label \\(14 findings per image\\); .*medmnist:pneumoniamnist has"):
        parse_source("medmnist:chestmnist")
    arrays = {
        f"{split}_{kind}": np.zeros((2, 28, 28) if kind == "images" else (2, 14), np.uint8)
        for split in ("train", "val", "test")
        for kind in ("images", "labels")
    }
    np.savez(tmp_path / "chest.npz", **arrays)
    with pytest.raises(UserError, match="is multi-label \\(14 labels per image\\)"):
        read_medmnist("pneumoniamnist", str(tmp_path / "chest.npz"))


def test_a_missing_datasets_package_gets_the_install_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # As if it were not installed.
    with pytest.raises(UserError, match=r"needs the `datasets` package: pip install 'keras-genlab\[hf\]'"):
        read_hugging_face("someone/chest-xrays")
