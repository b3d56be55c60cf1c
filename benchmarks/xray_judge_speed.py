"""How long the X-ray judge takes: training its classifier once, then judging 1,000 synthetic
images at 256 px with that classifier (FID/KID with the real floor, figures, CSV; no TSTR).

  python benchmarks/xray_judge_speed.py [--synthetic_count=1000] [--image_px=256]

The images are shapes drawn at 256 px (tests/image_folders.py), three classes: what is timed
(reading, resizing, the classifier, the distances, the figures) does not depend on what the
images show. No peer is timed: no other tool judges a class-folder set this way offline.
"""

import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from image_folders import make_shapes_folder  # noqa: E402

flags.DEFINE_integer("synthetic_count", 1000, "Synthetic images to judge.")
flags.DEFINE_integer("real_per_class", 200, "Real images per class (three classes).")
flags.DEFINE_integer("image_px", 256, "Size of the image files.")
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
        config = JudgeConfig(tstr=False)
        start = time.perf_counter()
        judge_dataset(real, synthetic, os.path.join(tmp, "first"), config, verbose=0)
        first = time.perf_counter() - start
        classifier = os.path.join(tmp, "first", "classifier.keras")
        start = time.perf_counter()
        summary = judge_dataset(
            real, synthetic, os.path.join(tmp, "second"), config, classifier_path=classifier, verbose=0
        )
        judging = time.perf_counter() - start
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


if __name__ == "__main__":
    app.run(main)
