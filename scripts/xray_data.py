"""Writes a public X-ray set as class folders, split as the set defines them, for the X-ray lab:

  genlab-xray-data --source=medmnist:pneumoniamnist --size=224 --output_dir=data/pneumonia
  genlab-xray-data --source=medmnist:pneumoniamnist --medmnist_path=pneumoniamnist_224.npz ...  # offline
  genlab-xray-data --source=hf:NAME --output_dir=data/NAME    # needs: pip install 'keras-genlab[hf]'

Then: genlab-xray-finetune --data_dir=data/pneumonia/train, genlab-xray-judge
--real=data/pneumonia/train. OUTPUT_DIR gets train/, val/ and test/ (one sub-folder per class),
SOURCE.md (the licence and the citation, also printed) and counts.csv.
"""

import os
import time

from absl import flags

from genlab.files import check_output_path
from scripts.common_flags import run_program
from xray.data.public_sets import MEDMNIST_SETS, MEDMNIST_SIZES, load_public_set, parse_source, write_public_set

flags.DEFINE_string(
    "source",
    None,
    "medmnist:NAME (MedMNIST+'s X-ray sets: " + ", ".join(sorted(MEDMNIST_SETS)) + ") or hf:NAME (a Hugging Face "
    "dataset with an image and a class-label column, or a folder its save_to_disk wrote).",
    required=True,
)
flags.DEFINE_integer(
    "size", 224, f"MedMNIST+'s image size in px: {', '.join(map(str, MEDMNIST_SIZES))}. Hugging Face sets keep theirs."
)
flags.DEFINE_string(
    "medmnist_path",
    "",
    "A MedMNIST .npz already on this machine (offline machines), read instead of downloading; Keras's cache "
    "(~/.keras/datasets/medmnist) is used otherwise.",
)
flags.DEFINE_string("output_dir", None, "A new or empty folder for train/, val/, test/ and SOURCE.md.", required=True)
FLAGS = flags.FLAGS


def main():
    parse_source(FLAGS.source)
    check_output_path(FLAGS.output_dir, "--output_dir")  # Before a download.
    public_set = load_public_set(FLAGS.source, FLAGS.size, FLAGS.medmnist_path)

    start, shown = time.monotonic(), {}

    def progress(split, done, total):
        if done == total or time.monotonic() - shown.get(split, 0) > 2:
            shown[split] = time.monotonic()
            print(f"\r{split}: {done}/{total} images", end="\n" if done == total else "", flush=True)

    counts = write_public_set(public_set, FLAGS.output_dir, progress)
    out = os.path.abspath(FLAGS.output_dir)
    print(f"Wrote {sum(row['images'] for row in counts)} images in {time.monotonic() - start:.0f} s to {out}")
    for row in counts:
        print(f"  {row['split']:6s} {row['class']:20s} {row['images']:6d}")
    print(f"Licence: {public_set.licence}\nCite:\n{public_set.citation}\n(also in {os.path.join(out, 'SOURCE.md')})")


def run():
    run_program(main)


if __name__ == "__main__":
    run()
