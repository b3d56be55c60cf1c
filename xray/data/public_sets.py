"""Public X-ray sets as class folders, split as each set defines them, for anyone without X-rays:

    OUT/train/<class>/<class>_00000.png   OUT/val/...   OUT/test/...
    OUT/SOURCE.md                           the set, its licence and how to cite it
    OUT/counts.csv                          images per split and class

The layout `genlab-xray-finetune --data_dir`, `genlab-xray-judge --real` and `genlab-xray
--init_images` read (OUT/train, OUT/test). Two sources:

- `medmnist:NAME`: a MedMNIST+ set's own .npz (`train_images`, `train_labels`, `val_*`,
  `test_*`), read directly with NumPy. Downloaded by `keras.utils.get_file` against the MD5
  MedMNIST publishes, or read from a local copy. The `medmnist` package is not needed (it
  pulls in PyTorch).
- `hf:NAME`: a Hugging Face dataset with an image column and a class-label column, from the
  Hub or from a folder `save_to_disk` wrote; it needs the optional `datasets` package.

Class names come from the set's own label names, made safe as the generator's are. Nothing is
left half-written: the folder is written beside OUT under a hidden name and renamed at the end.
"""

import dataclasses
import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from genlab.errors import UserError
from genlab.files import file_digest, write_csv, write_text
from xray.data.prompts import safe_class_name

SPLITS = ("train", "val", "test")
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{file}?download=1"
MEDMNIST_CITATION = (
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister, Bingbing Ni. "
    "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image classification. "
    "Scientific Data, 2023. https://doi.org/10.1038/s41597-022-01721-8"
)


@dataclasses.dataclass(frozen=True)
class MedMnistSet:
    description: str
    labels: tuple  # Label names by label number, as MedMNIST's INFO gives them.
    md5: dict  # {size in px: MD5 of the .npz}, as MedMNIST's INFO publishes them.
    licence: str
    citation: str  # The source data's paper; MedMNIST's own is added to every set.


# Single-label 2D X-ray sets of MedMNIST+ (medmnist/info.py, version 3).
MEDMNIST_SETS = {
    "pneumoniamnist": MedMnistSet(
        description="Pediatric chest X-rays (Guangzhou Women and Children's Medical Center), normal or pneumonia; "
        "MedMNIST's split: the source training set 9:1 into train and val, its validation set as test.",
        labels=("normal", "pneumonia"),
        md5={
            28: "28209eda62fecd6e6a2d98b1501bb15f",
            64: "8f4eceb4ccffa70c672198ea285246c6",
            128: "05b46931834c231683c68f40c47b2971",
            224: "d6a3c71de1b945ea11211b03746c1fe1",
        },
        licence="CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
        citation="Daniel S. Kermany, Michael Goldbaum, et al. Identifying Medical Diagnoses and Treatable Diseases "
        "by Image-Based Deep Learning. Cell, 2018. https://doi.org/10.1016/j.cell.2018.02.010",
    ),
}
MEDMNIST_SIZES = (28, 64, 128, 224)
# MedMNIST's multi-label X-ray set: {name: findings per image}. Class folders hold one label per image.
MULTI_LABEL_MEDMNIST = {"chestmnist": 14}


@dataclasses.dataclass
class PublicSet:
    """A set read into memory: {split: (images, labels)}, class names by label, and where it came from."""

    splits: dict  # {"train" | "val" | "test" | another split: (uint8 arrays (H, W[, C]) or PIL images, labels)}
    class_names: list
    source: str
    licence: str
    citation: str
    description: str = ""


def parse_source(source):
    """("medmnist" | "hf", NAME) from --source, or a one-line UserError."""
    kind, _, name = source.partition(":")
    if kind not in ("medmnist", "hf") or not name:
        raise UserError(
            f"--source={source} is not a source: use medmnist:NAME (e.g. medmnist:pneumoniamnist) or hf:NAME "
            "(a Hugging Face dataset, or a folder save_to_disk wrote)"
        )
    if kind == "medmnist" and name in MULTI_LABEL_MEDMNIST:
        raise UserError(
            f"--source={source} is multi-label ({MULTI_LABEL_MEDMNIST[name]} findings per image); class folders need "
            f"one label per image, as {', '.join(f'medmnist:{n}' for n in sorted(MEDMNIST_SETS))} has"
        )
    if kind == "medmnist" and name not in MEDMNIST_SETS:
        raise UserError(f"--source={source}: MedMNIST X-ray sets here are {', '.join(sorted(MEDMNIST_SETS))}")
    return kind, name


def load_public_set(source, size=224, medmnist_path=""):
    """The set --source names: MedMNIST's at `size` px (from `medmnist_path`, else downloaded once)
    or a Hugging Face dataset."""
    kind, name = parse_source(source)
    if kind == "hf":
        return read_hugging_face(name)
    check_medmnist_size(size)
    if medmnist_path and not os.path.isfile(medmnist_path):
        raise UserError(f"--medmnist_path={medmnist_path} is not a file; pass a MedMNIST .npz")
    return read_medmnist(name, medmnist_path or download_medmnist(name, size))


def medmnist_file_name(name, size):
    """MedMNIST+'s file name: NAME.npz at 28 px, NAME_SIZE.npz at the larger sizes."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def check_medmnist_size(size):
    if size not in MEDMNIST_SIZES:
        raise UserError(f"--size={size}: MedMNIST+ comes at {', '.join(map(str, MEDMNIST_SIZES))} px")


def download_medmnist(name, size, origin=None):
    """The path of MedMNIST+'s NAME at `size` px in Keras's cache, downloaded there once and checked
    against the published MD5. `origin` replaces Zenodo's address (a mirror)."""
    import keras  # Only to download: the rest of this layer runs without TensorFlow.

    check_medmnist_size(size)
    file_name = medmnist_file_name(name, size)
    origin = origin or MEDMNIST_URL.format(file=file_name)
    try:
        path = keras.utils.get_file(file_name, origin, cache_subdir=os.path.join("datasets", "medmnist"))
    except Exception as error:  # urllib's and Keras's own errors alike: offline, moved, refused.
        raise UserError(
            f"could not download {origin} ({type(error).__name__}); on an offline machine download {file_name} "
            "elsewhere and pass --medmnist_path=FILE"
        ) from None
    expected = MEDMNIST_SETS[name].md5[size]
    if file_digest(path, "md5") != expected:
        os.remove(path)  # A later run downloads it again instead of finding the same bad file.
        raise UserError(
            f"{file_name} from {origin} does not match MedMNIST's published MD5 {expected} (an interrupted or "
            "altered download); it was deleted: run again"
        )
    return path


def read_medmnist(name, path, flag="--medmnist_path"):
    """A MedMNIST set from its .npz; a file in another layout is named in one line."""
    info = MEDMNIST_SETS[name]
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{flag}={path} is not a readable .npz file ({error})") from None
    with data:
        missing = [
            f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels") if f"{split}_{kind}" not in data
        ]
        if missing:
            raise UserError(f"{flag}={path} lacks {', '.join(missing)}: it is not a MedMNIST .npz")
        splits = {}
        for split in SPLITS:
            labels = data[f"{split}_labels"]
            if labels.ndim == 2 and labels.shape[1] > 1:
                raise UserError(
                    f"{flag}={path} is multi-label ({labels.shape[1]} labels per image); class folders need one "
                    "label per image"
                )
            images, labels = data[f"{split}_images"], labels.reshape(-1)
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
                raise UserError(
                    f"{flag}={path}: {split}_images should be uint8 (N, H, W[, 3]) with one label each; "
                    "it is not a MedMNIST .npz"
                )
            if len(labels) and not (0 <= labels.min() and labels.max() < len(info.labels)):
                raise UserError(f"{flag}={path}: {split}_labels go beyond {name}'s {len(info.labels)} classes")
            splits[split] = (images, labels.astype(int))
    return PublicSet(
        splits=splits,
        class_names=[safe_class_name(label) for label in info.labels],
        source=f"MedMNIST+ {name} ({os.path.basename(path)})",
        licence=info.licence,
        citation=f"{info.citation}\n\n{MEDMNIST_CITATION}",
        description=info.description,
    )


def read_hugging_face(name):
    """A Hugging Face dataset (Hub name, or a folder `save_to_disk` wrote) with one image column and
    one ClassLabel column; splits named validation/valid become val."""
    # datasets logs at INFO which deep-learning frameworks it found, while importing; under absl
    # (which shows INFO) that would be a line before the program's own output.
    logging.getLogger("datasets").setLevel(logging.WARNING)
    try:
        import datasets
    except ImportError:
        raise UserError(f"--source=hf:{name} needs the `datasets` package: pip install 'keras-genlab[hf]'") from None
    try:
        loaded = datasets.load_from_disk(name) if os.path.isdir(name) else datasets.load_dataset(name)
    except Exception as error:  # The Hub's, the network's and the folder's errors alike.
        raise UserError(f"--source=hf:{name} could not be loaded: {str(error).splitlines()[0]}") from None
    parts = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    first = next(iter(parts.values()))
    features = first.features
    images = [column for column, feature in features.items() if isinstance(feature, datasets.Image)]
    labels = [column for column, feature in features.items() if isinstance(feature, datasets.ClassLabel)]
    several = [  # A list of class labels per image (datasets' List or Sequence of ClassLabel).
        column
        for column, feature in features.items()
        if isinstance(getattr(feature, "feature", None), datasets.ClassLabel)
    ]
    if several and not labels:
        raise UserError(
            f"--source=hf:{name} is multi-label (its column {several[0]} holds several class labels per image); "
            "class folders need one label per image"
        )
    if len(images) != 1 or len(labels) != 1:
        raise UserError(
            f"--source=hf:{name} needs one image column and one class-label column; its columns are "
            + ", ".join(f"{column} ({type(feature).__name__})" for column, feature in features.items())
        )
    split_names = {"validation": "val", "valid": "val"}
    splits = {  # The images are decoded one at a time, as they are written.
        split_names.get(split, safe_class_name(split)): ((row[images[0]] for row in part), part[labels[0]])
        for split, part in parts.items()
    }
    info = first.info
    return PublicSet(
        splits=splits,
        class_names=[safe_class_name(label) for label in features[labels[0]].names],
        source=f"Hugging Face dataset {name}",
        licence=info.license or "not stated by the dataset: check its card before sharing what you make",
        citation=info.citation or "not stated by the dataset: check its card",
        description=info.description or "",
    )


def write_public_set(public_set, out_dir, progress=None):
    """Writes the set as OUT/<split>/<class>/*.png with SOURCE.md and counts.csv; returns the counts
    rows. OUT must not exist or be empty; it appears whole or not at all. `progress(split, done,
    total)` is called after each image."""
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise UserError(f"--output_dir={out_dir} already holds files; choose a new folder")
    names = public_set.class_names
    if len(set(names)) != len(names) or not all(names):
        raise UserError(f"{public_set.source}: its label names {names} do not make distinct folder names")
    for split, (_, labels) in public_set.splits.items():
        labels = np.asarray(labels, dtype=int)
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise UserError(
                f"{public_set.source}: {split} has labels outside its {len(names)} classes (unlabelled images?)"
            )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        counts = []
        for split, (images, labels) in public_set.splits.items():
            for name in names:
                os.makedirs(os.path.join(work, split, name))
            for index, (image, label) in enumerate(zip(images, labels)):
                name = names[int(label)]
                picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
                picture.save(os.path.join(work, split, name, f"{name}_{index:05d}.png"))
                if progress:
                    progress(split, index + 1, len(labels))
            per_class = np.bincount(np.asarray(labels, dtype=int), minlength=len(names))
            counts += [{"split": split, "class": name, "images": int(n)} for name, n in zip(names, per_class)]
        write_csv(os.path.join(work, "counts.csv"), counts)
        write_text(os.path.join(work, "SOURCE.md"), source_text(public_set, counts))
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # Empty, checked above.
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def source_text(public_set, counts):
    """SOURCE.md: where the images came from, their licence, how to cite them, and the counts."""
    table = "\n".join(f"| {row['split']} | {row['class']} | {row['images']} |" for row in counts)
    return (
        f"# {public_set.source}\n\n{public_set.description}\n\n"
        f"## Licence\n\n{public_set.licence}\n\n## Citation\n\n{public_set.citation}\n\n"
        f"## Images\n\n| split | class | images |\n| --- | --- | --- |\n{table}\n"
    )
