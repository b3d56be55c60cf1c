"""Converts a Hugging Face diffusers Stable Diffusion 1.x checkpoint into KerasCV weight files.

  genlab-convert-diffusers --checkpoint=/data/roentgen --output_dir=/data/roentgen-kcv
  genlab-xray --weights=local --weights_path=/data/roentgen-kcv

Reads only .safetensors (pickled .bin/.ckpt files are refused). Writes kcv_encoder.h5,
kcv_diffusion_model.h5 and kcv_decoder.h5 (the layout of KerasCV's own downloads), the
checkpoint's tokenizer and conversion.json (its scheduler settings), so later runs skip
the conversion. `genlab-xray --weights=diffusers` converts on the fly instead.
"""

import os

from absl import flags

from genlab.files import check_output_path
from scripts.common_flags import run_program

flags.DEFINE_string(
    "checkpoint", None, "A diffusers checkpoint folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)."
)
flags.DEFINE_string("output_dir", None, "Where the KerasCV weight files go (created).")
flags.mark_flags_as_required(["checkpoint", "output_dir"])
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")  # Before TensorFlow loads.
    from xray.formats.keras_cv_files import convert_checkpoint

    convert_checkpoint(FLAGS.checkpoint, FLAGS.output_dir)
    print(
        f"Converted {FLAGS.checkpoint} into {os.path.abspath(FLAGS.output_dir)}; "
        f"use it with: genlab-xray --weights=local --weights_path={FLAGS.output_dir}"
    )


def run():
    run_program(main)


if __name__ == "__main__":
    run()
