"""Exports Stable Diffusion weights (with fine-tuned LoRA adapters merged in) as a diffusers
checkpoint folder, or the adapters alone as diffusers' LoRA file: the bridge's other direction.

  genlab-export-diffusers --weights=keras_cv --lora=runs/xray_lora/lora.safetensors --output_dir=runs/xray-sd
  genlab-export-diffusers --lora=runs/xray_lora/lora.safetensors --lora_only --output_dir=runs/xray-lora

The folder holds unet/, vae/, text_encoder/, tokenizer/, scheduler/ and model_index.json
(safetensors only): StableDiffusionPipeline.from_pretrained reads it, and it can be pushed to
the Hugging Face Hub as it is. --lora_only writes pytorch_lora_weights.safetensors, which
pipe.load_lora_weights(OUTPUT_DIR) reads.
"""

import os

from absl import flags

from genlab.errors import UserError
from genlab.files import check_output_path
from scripts.common_flags import run_program
from scripts.xray_flags import define_source_flags, parse_lora

flags.DEFINE_string("output_dir", None, "The diffusers folder to write.", required=True)
define_source_flags()
flags.DEFINE_multi_string("lora", [], "LoRA adapters to merge in, FILE or FILE:SCALE (repeat to stack).")
flags.DEFINE_bool("lora_only", False, "Write only the adapters (one --lora), as diffusers' LoRA file.")
FLAGS = flags.FLAGS


def main():
    check_output_path(FLAGS.output_dir, "--output_dir")
    loras = [parse_lora(value) for value in FLAGS.lora]
    if FLAGS.lora_only and len(FLAGS.lora) != 1:
        raise UserError("--lora_only exports one adapter file: pass exactly one --lora=FILE")
    if FLAGS.lora_only:
        from xray.formats.export import export_lora

        print(f"Wrote {export_lora(loras[0][0], FLAGS.output_dir)}: pipe.load_lora_weights('{FLAGS.output_dir}')")
        return
    from xray.formats.export import export_checkpoint
    from xray.weights import load_image_encoder, load_stable_diffusion

    # Weights do not depend on the image size; the smallest builds fastest. Exports are float32.
    models = load_stable_diffusion(
        128, FLAGS.weights, FLAGS.weights_path, FLAGS.tokenizer_path, precision="float32", loras=loras
    )
    image_encoder = load_image_encoder(FLAGS.weights, FLAGS.weights_path)
    export_checkpoint(
        models,
        image_encoder,
        FLAGS.output_dir,
        source_checkpoint=FLAGS.weights_path if FLAGS.weights == "diffusers" else "",
    )
    print(
        f"Wrote a diffusers checkpoint of {models.weight_source} to {os.path.abspath(FLAGS.output_dir)}:\n"
        f"  StableDiffusionPipeline.from_pretrained('{FLAGS.output_dir}')"
    )


def run():
    run_program(main)


if __name__ == "__main__":
    run()
