"""Stable Diffusion on this CPU: the X-ray generator against diffusers, same run, matched precision.

  python benchmarks/sd_speed.py                                  # 256 and 512 px, float32
  python benchmarks/sd_speed.py --sizes=512 --precisions=float32,bfloat16 --modes=project,diffusers
  python benchmarks/sd_speed.py --sizes=512 --tasks=text_to_image,image_to_image --strength=0.5

Each configuration makes whole images, timed end to end: text encoding of the prompt and
the negative prompt, `--steps_per_image` denoising steps with guidance (so every step runs
the U-Net on a batch of 2), and VAE decoding. A short image first traces the graphs (and,
with XLA, compiles); the timed image follows. Seconds per step are the median of that
image's steps. Random weights: speed does not depend on their values.

The peer is diffusers' `UNet2DConditionModel`, `AutoencoderKL` decoder, `DDIMScheduler` and
transformers' `CLIPTextModel` with Stable Diffusion 1.x's configuration, run as
`StableDiffusionPipeline` runs them (inference mode, guidance as one batch of 2). It needs
the test extra (`pip install -e '.[test]'`). PyTorch gets as many threads as TensorFlow
uses; both are printed.

Image-to-image (`--tasks=image_to_image`) also encodes a source image with the VAE encoder and
runs only int(steps * strength) of the steps, as diffusers' StableDiffusionImg2ImgPipeline
does (its peer runs diffusers' `AutoencoderKL` encoder and the same scheduler from the same
timestep); its rows add the ratio to the same side's text-to-image, about the strength.

The headline is the ratio at matched precision (bfloat16 against bfloat16, float32 against
float32): the same arithmetic, so the ratio is the libraries' speed. The ratio against
diffusers' default (float32) follows it: what a user switching tools would see. bfloat16
is Keras's `mixed_bfloat16` policy for the project and `.to(torch.bfloat16)` for diffusers.

Each row runs in a process of its own (its peak memory is its own, and TensorFlow reads its
kernel settings when it loads). The project's modes each turn one of genlab-xray's memory and
speed levers off (`PROJECT_MODES`): `project` runs as `genlab-xray` does, its weights stored in the
compute dtype (`frozen=True`), its large attentions in query chunks (`xray.sd.attention`) and
TensorFlow's kernels those of `genlab.runtime.use_inference_only_kernels` (oneDNN, each kernel
keeping its reordered weights); `project_tf_kernels` with the kernels TensorFlow chooses on this
CPU by itself (`--nocpu_weight_cache`); `project_float32_weights` with float32 weights cast to
bfloat16 on every call, as Keras's mixed policy keeps them for training (the same in float32);
`project_keras_attention` with KerasCV's attention (`--nochunked_attention`).
The header names the instruction set oneDNN reports in each library.
"""

import json
import statistics
import time

import numpy as np
from absl import app, flags
from machine import describe_machine, describe_onednn, print_row_result, run_row_processes, tensorflow_threads

from genlab.runtime import use_inference_only_kernels
from xray.config import steps_run

flags.DEFINE_list("sizes", ["256", "512"], "Image sizes in pixels (multiples of 128).")
flags.DEFINE_list(
    "modes",
    ["project", "project_tf_kernels", "diffusers"],
    "project: Keras graph functions as genlab-xray runs them; project_tf_kernels: with TensorFlow's own "
    "choice of kernels; project_float32_weights: with float32 weights under mixed precision; "
    "project_keras_attention: with KerasCV's attention; xla: the project with jit_compile=True; diffusers: "
    "the PyTorch peer.",
)
flags.DEFINE_integer("steps_per_image", 25, "Denoising steps of the timed image.", lower_bound=2)
flags.DEFINE_string("tokenizer_path", "", "CLIP BPE file (default: $CLIP_BPE_PATH, else download).")
flags.DEFINE_list("precisions", ["float32"], "float32 and/or bfloat16, for both the project and diffusers.")
flags.register_validator(
    "precisions", lambda values: set(values) <= {"float32", "bfloat16"}, "--precisions takes float32 and/or bfloat16"
)
flags.DEFINE_list(
    "tasks", ["text_to_image"], "text_to_image and/or image_to_image (a source image varied at --strength)."
)
flags.register_validator(
    "tasks",
    lambda values: set(values) <= {"text_to_image", "image_to_image"},
    "--tasks takes text_to_image and/or image_to_image",
)
flags.DEFINE_float("strength", 0.5, "Image-to-image's strength: the share of the steps that run.")
flags.DEFINE_string("row", "", "Internal: run one row, given as JSON, and print its result.")
FLAGS = flags.FLAGS
KERAS_PRECISION = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# Each project mode: whether its kernels keep reordered weights, whether its weights are stored in
# the compute dtype, whether its attention runs in query chunks, whether XLA compiles it.
PROJECT_MODES = {
    "project": dict(weight_cache=True, frozen=True, chunked_attention=True, xla=False),
    "project_tf_kernels": dict(weight_cache=False, frozen=True, chunked_attention=True, xla=False),
    "project_float32_weights": dict(weight_cache=True, frozen=False, chunked_attention=True, xla=False),
    "project_keras_attention": dict(weight_cache=True, frozen=True, chunked_attention=False, xla=False),
    "xla": dict(weight_cache=True, frozen=True, chunked_attention=True, xla=True),
}
flags.register_validator(
    "modes",
    lambda values: set(values) <= {*PROJECT_MODES, "diffusers"},
    f"--modes takes {', '.join(PROJECT_MODES)} and/or diffusers",
)
PROMPTS = ["Frontal chest X-ray of healthy lungs", "color, text, watermark"]


def time_image(image, steps):
    """(median seconds per step, seconds for the whole image) of `image(steps, marks)`, after a
    2-step image that traces the graphs (and with XLA compiles them) or lets oneDNN pick its kernels."""
    image(2)
    marks = [time.perf_counter()]
    image(steps, marks)
    return statistics.median(b - a for a, b in zip(marks, marks[1:])), time.perf_counter() - marks[0]


def source_image(size):
    """The image image-to-image varies: a bright rectangle on a dark ground, in [-1, 1], NHWC."""
    pixels = np.full((1, size, size, 3), -0.8, dtype=np.float32)
    pixels[:, size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 0.6
    return pixels


def measure_project(size, precision, mode, steps, tokenizer_path, strength=None):
    """`strength` None: text-to-image; else image-to-image at that strength."""
    levers = PROJECT_MODES[mode]
    if levers["weight_cache"]:
        use_inference_only_kernels()
    from xray.sd.sampler import Variation, decode_to_uint8, encode_texts, initial_noise, sample_latents
    from xray.weights import load_image_encoder, load_stable_diffusion

    precision = KERAS_PRECISION[precision]
    models = load_stable_diffusion(
        size,
        "random",
        tokenizer_path=tokenizer_path,
        precision=precision,
        jit_compile=levers["xla"],
        frozen=levers["frozen"],
        chunked_attention=levers["chunked_attention"],
    )
    if strength is not None:
        # Frozen in every mode, as genlab-xray builds it: the float32-weights lever is the generation networks'.
        encoder = load_image_encoder("random", precision=precision, frozen=True)
        encoder.compile(jit_compile=levers["xla"])

    def image(steps, marks=None):
        context, unconditional = encode_texts(models, PROMPTS)
        variation = None
        if strength is not None:
            variation = Variation(np.asarray(encoder.predict_on_batch(source_image(size)), np.float32), strength)
        latents = sample_latents(
            models,
            initial_noise(0, size)[None],
            context[None],
            unconditional[None],
            num_steps=steps,
            guidance_scale=7.5,
            on_step=None if marks is None else lambda step: marks.append(time.perf_counter()),
            variation=variation,
        )
        return decode_to_uint8(models, latents)

    return time_image(image, steps)


def measure_diffusers(size, precision, steps, threads, strength=None):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.set_num_threads(threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
    # diffusers' U-Net defaults are SD 1.x's but for the text width (768); its VAE's are a toy's.
    unet = UNet2DConditionModel(cross_attention_dim=768).eval().to(dtype)
    vae = (
        AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            latent_channels=4,
            layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
        .eval()
        .to(dtype)
    )
    text_encoder = (
        CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                hidden_act="quick_gelu",
                projection_dim=768,
            )
        )
        .eval()
        .to(dtype)
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        set_alpha_to_one=False,
        steps_offset=1,
        clip_sample=False,
    )
    tokens = torch.randint(0, 49408, (2, 77))  # The prompt and the negative prompt, tokenized.

    @torch.inference_mode()
    def image(steps, marks=None):
        context = text_encoder(tokens).last_hidden_state
        latents = torch.randn(1, 4, size // 8, size // 8, dtype=dtype)
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        if strength is not None:  # StableDiffusionImg2ImgPipeline's get_timesteps and prepare_latents.
            timesteps = timesteps[steps - steps_run(steps, strength) :]
            source = torch.tensor(source_image(size).transpose(0, 3, 1, 2), dtype=dtype)
            encoded = 0.18215 * vae.encode(source).latent_dist.sample()
            latents = scheduler.add_noise(encoded, latents, timesteps[:1])
        for t in timesteps:
            eps = unet(torch.cat([latents] * 2), t, encoder_hidden_states=context).sample
            unconditional, conditional = eps.chunk(2)
            latents = scheduler.step(unconditional + 7.5 * (conditional - unconditional), t, latents).prev_sample
            if marks is not None:
                marks.append(time.perf_counter())
        pixels = vae.decode(latents / 0.18215).sample
        return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    return time_image(image, steps)


def run_row(row):
    strength = row["strength"] if row["task"] == "image_to_image" else None
    if row["mode"] == "diffusers":
        step, image = measure_diffusers(row["size"], row["precision"], row["steps"], row["threads"], strength)
    else:
        step, image = measure_project(
            row["size"], row["precision"], row["mode"], row["steps"], row["tokenizer_path"], strength
        )
    print_row_result(row, seconds_per_step=step, seconds_per_image=image)


def main(argv):
    del argv
    if FLAGS.row:
        run_row(json.loads(FLAGS.row))
        return
    print(describe_machine())
    print(describe_onednn("TensorFlow"))
    if "diffusers" in FLAGS.modes:
        import torch

        print(
            f"{describe_onednn('PyTorch')}; PyTorch {torch.__version__}, {tensorflow_threads()} threads (TensorFlow's "
            "count), "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
        )
    rows = [
        {
            "mode": mode,
            "size": size,
            "precision": precision,
            "steps": FLAGS.steps_per_image,
            "tokenizer_path": FLAGS.tokenizer_path,
            "task": task,
            "strength": FLAGS.strength,
        }
        for size in map(int, FLAGS.sizes)
        for precision in FLAGS.precisions
        for task in FLAGS.tasks
        for mode in FLAGS.modes
    ]
    results = {}
    for row, result in run_row_processes(__file__, rows):
        results[row["size"], row["precision"], row["task"], row["mode"]] = result
        print(
            f"  measured {row['size']} px {row['task']} {row['mode']} {row['precision']}: "
            f"{result['seconds_per_step']:.2f} s/step, {result['seconds_per_image']:.0f} s/image, "
            f"peak {result['peak_gib']:.1f} GiB",
            flush=True,
        )

    print(
        f"\nStable Diffusion 1.x, one {FLAGS.steps_per_image}-step image with guidance (U-Net batch 2), timed whole; "
        f"image-to-image at strength {FLAGS.strength:g}"
    )
    print(
        "| size | task | side | precision | s/step (median) | s/image | peak GiB | image / diffusers, same precision "
        "| image / diffusers float32 | image / own text-to-image |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (size, precision, task, mode), result in results.items():
        peers = (
            results.get((size, precision, task, "diffusers")),
            results.get((size, "float32", task, "diffusers")),
            results.get((size, precision, "text_to_image", mode)) if task == "image_to_image" else None,
        )
        image = result["seconds_per_image"]
        ratios = [f"{image / peer['seconds_per_image']:.2f}x" if peer else "-" for peer in peers]
        print(
            f"| {size} | {task} | {mode} | {precision} | {result['seconds_per_step']:.2f} | {image:.0f} | "
            f"{result['peak_gib']:.1f} | {' | '.join(ratios)} |"
        )


if __name__ == "__main__":
    app.run(main)
