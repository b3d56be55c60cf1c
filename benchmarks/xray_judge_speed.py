"""How long the X-ray judge takes: training its classifier once, then judging 1,000 synthetic
images at 256 px with that classifier (FID/KID with the real floor, figures, CSV; no TSTR, no
augmentation test); and, apart, the augmentation test on 1,000 real and 1,000 synthetic images at 128 px with 3
seeds (4 ways of training x 3 seeds: 12 classifiers).

  python benchmarks/xray_judge_speed.py [--synthetic_count=1000] [--image_px=256] [--augmentation_count=1000]

The images are shapes (tests/helpers/image_folders.py), three classes: what is timed (reading,
resizing, the classifier, the distances, the figures) does not depend on what the images show.
No peer is timed: no other tool judges a class-folder set this way offline.
"""

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

# The repository first, so that `xray` is the package and not tests/xray, the folder of its tests.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO]
sys.path.append(os.path.join(REPO, "tests"))
from helpers.image_folders import make_shapes_folder  # noqa: E402

flags.DEFINE_integer("synthetic_count", 1000, "Synthetic images to judge.")
flags.DEFINE_integer("real_per_class", 200, "Real images per class (three classes).")
flags.DEFINE_integer("image_px", 256, "Size of the image files.")
flags.DEFINE_integer(
    "augmentation_count", 1000, "Real and synthetic images (each) of the augmentation test, at 128 px; 0 for none."
)
flags.DEFINE_integer("augmentation_seeds", 3, "Seeds of the augmentation test.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from machine import describe_machine

    from xray.config import JudgeConfig
    from xray.judging.judge import judge_dataset

    print(describe_machine())
    with tempfile.TemporaryDirectory() as tmp:
        real = make_shapes_folder(os.path.join(tmp, "real"), FLAGS.real_per_class, seed=0, size=FLAGS.image_px)
        synthetic = make_shapes_folder(
            os.path.join(tmp, "synthetic"), -(-FLAGS.synthetic_count // 3), seed=1, size=FLAGS.image_px
        )
        config = JudgeConfig(tstr=False, augmentation="off")  # The augmentation test is timed apart, below.
        start = time.perf_counter()
        judge_dataset(real, synthetic, os.path.join(tmp, "first"), config, verbose=0)
        first = time.perf_counter() - start
        classifier = os.path.join(tmp, "first", "classifier.keras")
        start = time.perf_counter()
        summary = judge_dataset(
            real, synthetic, os.path.join(tmp, "second"), config, classifier_path=classifier, verbose=0
        )
        judging = time.perf_counter() - start
        if FLAGS.augmentation_count:
            augmentation = time_augmentation_test(tmp)
    count = summary["synthetic"]["count"]
    print(
        f"judge classifier: {config.backbone}, {config.image_size} px input, {config.epochs} epochs on "
        f"{summary['classifier']['train_count']} real images; accuracy "
        f"{summary['classifier']['training_accuracy']:.1%} "
        f"in training, {summary['classifier']['held_out_accuracy']:.1%} held out"
    )
    print(f"training and first judging: {first:.1f} s; training alone: {first - judging:.1f} s (the difference)")
    print(
        f"judging {count} synthetic images at {FLAGS.image_px} px with the trained classifier: {judging:.1f} s "
        f"({count / judging:.1f} images/s)"
    )
    if FLAGS.augmentation_count:
        seconds, report = augmentation
        print(
            f"augmentation test, {FLAGS.augmentation_count} real + {FLAGS.augmentation_count} synthetic images at "
            f"128 px, {FLAGS.augmentation_seeds} seeds ({4 * FLAGS.augmentation_seeds} classifiers, "
            f"{report['test_count']} test images): {seconds:.0f} s, {seconds / (4 * FLAGS.augmentation_seeds):.1f} s "
            "per classifier"
        )


def time_augmentation_test(tmp):
    """(seconds, report) of the augmentation test alone, on images already read: 4 arms x seeds."""
    from xray.config import JudgeConfig
    from xray.data.image_folder import class_folders, read_grayscale_images
    from xray.judging.judge import run_augmentation_test

    per_class = -(-FLAGS.augmentation_count // 3)
    arrays = []
    for name, seed in (("aug_real", 2), ("aug_synthetic", 3), ("aug_test", 4)):
        folders = class_folders(make_shapes_folder(os.path.join(tmp, name), per_class, seed=seed, size=128), name)
        paths = [(path, label) for label, (_, files) in enumerate(sorted(folders.items())) for path in files]
        arrays.append((read_grayscale_images([p for p, _ in paths], 128), np.array([label for _, label in paths])))
    config = JudgeConfig(augmentation_seeds=FLAGS.augmentation_seeds)
    (x_real, y_real), (x_syn, y_syn), (x_test, y_test) = arrays
    start = time.perf_counter()
    report = run_augmentation_test(config, x_real, y_real, x_test, y_test, x_syn, y_syn, ["a", "b", "c"], verbose=0)
    return time.perf_counter() - start, report


if __name__ == "__main__":
    app.run(main)
