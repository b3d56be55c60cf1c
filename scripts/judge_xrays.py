"""Judges a synthetic X-ray set against real X-rays: does each class show what it should, do
the images look real, and are they useful for training?

  genlab-xray-judge --real=data/chest_xray/train --synthetic=runs/xray --output_dir=runs/xray_judge
  genlab-xray-judge --real=... --synthetic=... --classifier=runs/xray_judge/classifier.keras   # reuse

  genlab-xray-judge --real=data/pneumonia/train --real_test=data/pneumonia/test --synthetic=runs/xray \
      --augmentation=on   # does adding the synthetic set help, against adding duplicated real images?

Both folders hold one sub-folder of PNG or JPEG images per class (genlab-xray's output, or a
public set's layout); class names are matched between them. Writes summary.json,
predictions.csv, confusion_matrix.png, convincing.png, metrics.png, augmentation.png (with the
augmentation test) and the classifier (classifier.keras) into OUTPUT_DIR, and prints the
figures beside their real floors.
"""

import os

from absl import flags

from genlab.files import check_output_path
from scripts.common_flags import positive, run_program
from xray.config import BACKBONES, JudgeConfig

_DEFAULTS = JudgeConfig()
flags.DEFINE_string(
    "real", None, "Folder of real X-rays, one sub-folder per class: trains and tests the judge.", required=True
)
flags.DEFINE_string(
    "synthetic",
    None,
    "Folder of synthetic X-rays to judge, one sub-folder per class (genlab-xray's --output_dir).",
    required=True,
)
flags.DEFINE_string("output_dir", "runs/xray_judge", "Where the summary, per-image CSV, figures and classifier go.")
flags.DEFINE_string(
    "classifier", "", "A classifier.keras saved by an earlier run (classifier.json beside it): reused, not retrained."
)
flags.DEFINE_enum(
    "backbone",
    _DEFAULTS.backbone,
    BACKBONES,
    "The judge: a small CNN trained from scratch, or a frozen ImageNet backbone from keras.applications with a new "
    "head.",
)
flags.DEFINE_string(
    "backbone_weights",
    _DEFAULTS.backbone_weights,
    "'imagenet' (Keras downloads them) or a local weights file for the backbone without its top, for offline machines.",
)
flags.DEFINE_integer(
    "image_size", _DEFAULTS.image_size, "The classifier's input size: every image is centre-cropped and resized to it."
)
flags.DEFINE_integer(
    "epochs", _DEFAULTS.epochs, "Training epochs, for the judge and for the train-on-synthetic classifier alike."
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per training and prediction batch.")
flags.DEFINE_float(
    "holdout_fraction",
    _DEFAULTS.holdout_fraction,
    "Share of each real class held out to test the classifiers.",
    lower_bound=0.05,
    upper_bound=0.5,
)
flags.DEFINE_bool("tstr", _DEFAULTS.tstr, "Also train on the synthetic set and test on real (a second training run).")
flags.DEFINE_enum(
    "augmentation",
    _DEFAULTS.augmentation,
    ["auto", "on", "off"],
    "The augmentation test: do synthetic images help a classifier trained on real ones, against the control of "
    "adding as many duplicated real images? Trains real / real + synthetic / real + duplicates / synthetic only, "
    "--augmentation_seeds times each. auto: when every class has at least "
    "30 real test images, fewer being too coarse to show a few points' gain.",
)
flags.DEFINE_integer(
    "augmentation_seeds",
    _DEFAULTS.augmentation_seeds,
    "Seeds per arm of the augmentation test: their spread is the noise a difference must beat.",
    lower_bound=2,
)
flags.DEFINE_string(
    "real_test",
    "",
    "Real test images in class folders (a set's own test split, e.g. genlab-xray-data's OUTPUT_DIR/test): the "
    "augmentation test's arms then train on all of --real and are tested on these.",
)
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed, "Seed for the split, the classifiers and the FID/KID samples.", lower_bound=0
)
for _name in ("image_size", "epochs", "batch_size"):
    positive(_name)
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")  # Before TensorFlow loads.
    from xray.judging.judge import format_summary, judge_dataset

    config = JudgeConfig(
        image_size=FLAGS.image_size,
        backbone=FLAGS.backbone,
        backbone_weights=FLAGS.backbone_weights,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        holdout_fraction=FLAGS.holdout_fraction,
        tstr=FLAGS.tstr,
        augmentation=FLAGS.augmentation,
        augmentation_seeds=FLAGS.augmentation_seeds,
        seed=FLAGS.seed,
    )
    summary = judge_dataset(
        FLAGS.real,
        FLAGS.synthetic,
        FLAGS.output_dir,
        config,
        classifier_path=FLAGS.classifier,
        real_test_dir=FLAGS.real_test,
    )
    print(format_summary(summary))
    figures = "confusion_matrix.png, convincing.png, metrics.png" + (
        ", augmentation.png" if "augmentation" in summary else ""
    )
    print(f"summary.json, predictions.csv, {figures} in {os.path.abspath(FLAGS.output_dir)}")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
