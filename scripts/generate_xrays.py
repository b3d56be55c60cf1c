"""Generates a synthetic X-ray dataset with KerasCV's Stable Diffusion: one folder per class.

  genlab-xray --output_dir=runs/xray --images_per_prompt=20             # KerasCV's v1.4 download
  genlab-xray --prompt_file=prompts.yaml --weights=local --weights_path=/data/kcv_weights
  genlab-xray --weights=diffusers --weights_path=/data/roentgen          # a diffusers checkpoint
  genlab-xray --weights=random --image_size=128 --steps=2                # smoke test: noise images
  genlab-xray --init_images=data/real/train --strength=0.5 --images_per_class=500   # vary real X-rays

Writes OUTPUT_DIR/<class>/<class>_NNNN.png (grayscale), OUTPUT_DIR/metadata.csv and
OUTPUT_DIR/sample_grid.png. Run the same command again after an interruption: finished
images are kept and the rest are made. To split the work over N machines, run shard
--shard_index=0..N-1 with --num_shards=N into one shared folder, then `--merge` once.
"""

import os
import subprocess
import sys

from absl import flags

from genlab.errors import UserError
from genlab.files import check_output_path
from genlab.runtime import keep_torch_out, use_inference_only_kernels
from scripts.common_flags import positive, run_program
from scripts.xray_flags import define_weight_flags, parse_lora
from xray.config import DEFAULT_CAPTION_TEMPLATE, VariationConfig, XrayConfig
from xray.data.prompts import BUILTIN_PROMPTS, load_prompt_file, prompts_for_classes

_DEFAULTS = XrayConfig()
_VARIATIONS = VariationConfig(init_images="")
flags.DEFINE_string("output_dir", "runs/xray", "The dataset folder (created; a finished run's images are reused).")
flags.DEFINE_string(
    "prompt_file", "", "JSON or YAML list of {class, prompt, negative_prompt?, count?} replacing the built-in prompts."
)
flags.DEFINE_integer(
    "images_per_prompt", _DEFAULTS.images_per_prompt, "Images per class (a prompt file's `count` wins)."
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per U-Net call; does not change the images.")
flags.DEFINE_integer("steps", _DEFAULTS.steps, "Denoising steps per image.")
flags.DEFINE_float(
    "guidance_scale",
    _DEFAULTS.guidance_scale,
    "Classifier-free guidance: higher follows the prompt more closely; 1 turns it off.",
    lower_bound=1.0,
)
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed, "Run seed; each image's seed derives from it, its prompt and its index.", lower_bound=0
)
flags.DEFINE_string(
    "negative_prompt",
    _DEFAULTS.negative_prompt,
    "What the images should not look like (a prompt file's entry wins; '' for none).",
)
define_weight_flags()
flags.DEFINE_multi_string(
    "lora",
    [],
    "LoRA adapters to apply, FILE or FILE:SCALE (genlab-xray-finetune's lora.safetensors, or a diffusers LoRA file); "
    "repeat to stack.",
)
flags.DEFINE_bool(
    "cpu_weight_cache",
    True,
    "On a CPU, run oneDNN's kernels, each keeping its weights in the layout it computes with: 1.1-1.6x faster "
    "images for one more copy of the weights in memory (about 1.2 GiB in bfloat16, 2.3 GiB in float32; "
    "docs/benchmarks.md). Turn it off where memory is short. No effect on GPUs.",
)
flags.DEFINE_bool(
    "chunked_attention",
    True,
    "Run the U-Net's large self-attentions in query chunks (xray.sd.attention), not KerasCV's whole score "
    "matrices: the same images within one grey level (float32), less memory and time at 512 px.",
)
flags.DEFINE_bool(
    "jit_compile", False, "Compile the networks with XLA (slow first batch; faster steps on some machines)."
)
flags.DEFINE_integer("num_shards", 1, "Split the images over this many independent jobs.")
flags.DEFINE_integer("shard_index", 0, "Which shard this job makes, 0..num_shards-1.", lower_bound=0)
flags.DEFINE_string(
    "real",
    "",
    "A folder of real X-rays, one sub-folder per class: the finished dataset is then judged against it "
    "(genlab-xray-judge's defaults).",
)
flags.DEFINE_string("judge_dir", "", "Where the judge's report goes (default: OUTPUT_DIR_judge, beside the dataset).")
flags.DEFINE_string(
    "init_images",
    "",
    "Vary real X-rays instead of drawing from text (image-to-image): a folder with one sub-folder of images per "
    "class, each class under its prompt (--prompt_file's entry for it, else --caption_template).",
)
flags.DEFINE_float(
    "strength",
    _VARIATIONS.strength,
    "With --init_images: how far a variation may move from its image, in (0, 1]; the share of --steps that run.",
)
flags.DEFINE_integer(
    "variations_per_image", _VARIATIONS.variations_per_image, "With --init_images: variations of each image."
)
flags.DEFINE_integer(
    "images_per_class",
    _VARIATIONS.images_per_class,
    "With --init_images: fill each class up to this many, cycling through its images (0: --variations_per_image).",
    lower_bound=0,
)
flags.DEFINE_string(
    "masks",
    "",
    "With --init_images: a folder of masks with the images' relative paths, white where the image is regenerated "
    "and black where it is kept (any SD 1.x U-Net; diffusers' blending).",
)
flags.DEFINE_string(
    "caption_template",
    DEFAULT_CAPTION_TEMPLATE,
    "With --init_images and no --prompt_file: each class's prompt, with {class_name} (built-in classes keep theirs).",
)
flags.DEFINE_bool(
    "merge", False, "Only rebuild metadata.csv and sample_grid.png from the PNGs in --output_dir (after sharded runs)."
)
for _name in ("images_per_prompt", "batch_size", "steps", "num_shards", "variations_per_image"):
    positive(_name)
flags.register_validator(
    "strength", lambda value: 0.0 < value <= 1.0, message="--strength must be in (0, 1]: 0.3 stays close, 0.8 varies"
)
FLAGS = flags.FLAGS


def main():
    from xray.generation import dataset

    out = FLAGS.output_dir
    if FLAGS.merge:
        if not os.path.isdir(out):
            raise UserError(f"--output_dir={out!r} does not exist; point --merge at the shards' dataset folder")
        rows = dataset.write_index(out)
        print(
            f"Indexed {len(rows)} images: {os.path.join(out, dataset.METADATA_FILE)}, "
            f"{os.path.join(out, dataset.GRID_FILE)}"
        )
        return
    config = XrayConfig(
        images_per_prompt=FLAGS.images_per_prompt,
        batch_size=FLAGS.batch_size,
        steps=FLAGS.steps,
        guidance_scale=FLAGS.guidance_scale,
        seed=FLAGS.seed,
        negative_prompt=FLAGS.negative_prompt,
        num_shards=FLAGS.num_shards,
        shard_index=FLAGS.shard_index,
    )
    dataset.shard([], config.num_shards, config.shard_index)  # Checks the shard flags before any work.
    check_output_path(out, "--output_dir")
    judge_dir = FLAGS.judge_dir or out.rstrip("/\\") + "_judge"
    if FLAGS.real:
        from xray.data.image_folder import class_folders

        class_folders(FLAGS.real, "--real")  # A wrong folder is named now, not after hours of generation.
        check_output_path(judge_dir, "--judge_dir")
    class_prompts = load_prompt_file(FLAGS.prompt_file) if FLAGS.prompt_file else BUILTIN_PROMPTS
    variations = sources = None
    if FLAGS.init_images:
        from xray.generation.variations import find_sources, plan_variations

        variations = VariationConfig(
            FLAGS.init_images, FLAGS.strength, FLAGS.variations_per_image, FLAGS.images_per_class, FLAGS.masks
        )
        sources = find_sources(variations.init_images, variations.masks)  # Every image and mask checked now.
        if not FLAGS.prompt_file:
            class_prompts = prompts_for_classes(list(sources), FLAGS.caption_template)
        plan_variations(sources, class_prompts, variations, config)
        class_prompts = [p for p in class_prompts if p.class_name in sources]
    loras = [parse_lora(value) for value in FLAGS.lora]
    # The judge trains, so it runs in a process of its own with the user's settings.
    judge_environment = dict(os.environ)
    keep_torch_out()  # These two before KerasCV and TensorFlow load, which the next imports do.
    if FLAGS.cpu_weight_cache:
        use_inference_only_kernels()
    # TensorFlow loads only now, once the cheap checks have passed.
    import keras

    from xray.generation.generate import generate_dataset
    from xray.weights import load_image_encoder, load_stable_diffusion

    keras.utils.set_random_seed(FLAGS.seed)  # --weights=random then gives the same networks every run.
    texts = (
        {config.negative_prompt}
        | {p.prompt for p in class_prompts}
        | {p.negative_prompt for p in class_prompts if p.negative_prompt}
    )
    models = load_stable_diffusion(
        FLAGS.image_size,
        FLAGS.weights,
        FLAGS.weights_path,
        FLAGS.tokenizer_path,
        precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        check_texts=sorted(texts),
        loras=loras,
        # Generation never trains them: weights stored in the compute dtype (half the memory under
        # mixed_bfloat16, and no cast on every call) compute what the mixed policy computes.
        frozen=True,
        chunked_attention=FLAGS.chunked_attention,
    )
    image_encoder = None
    if variations:
        image_encoder = load_image_encoder(FLAGS.weights, FLAGS.weights_path, FLAGS.precision, frozen=True)
        image_encoder.compile(jit_compile=FLAGS.jit_compile)
    os.makedirs(out, exist_ok=True)
    result = generate_dataset(
        models, class_prompts, config, out, variations=variations, image_encoder=image_encoder, sources=sources
    )
    print(
        f"Made {result.made} images in {result.seconds:.0f} s ({result.skipped} were already done) in "
        f"{os.path.abspath(out)}."
    )
    if result.indexed:
        print(f"  {dataset.METADATA_FILE} (one row per image) and {dataset.GRID_FILE} (a few images per class).")
        if FLAGS.real:
            print("Judging the dataset against --real (genlab-xray-judge's defaults):", flush=True)
            judged = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "scripts.judge_xrays",
                    f"--real={FLAGS.real}",
                    f"--synthetic={out}",
                    f"--output_dir={judge_dir}",
                ],
                env=judge_environment,
            )
            if judged.returncode:
                raise SystemExit(judged.returncode)  # The judge has said why in one line.
    else:
        print(
            f"  Shard {config.shard_index + 1} of {config.num_shards} done; when all are, run: genlab-xray --merge "
            f"--output_dir={out}"
        )


def run():
    run_program(main)


if __name__ == "__main__":
    run()
