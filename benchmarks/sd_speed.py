"""Seconds per denoising step and per image: the X-ray generator against diffusers, same run.

  python benchmarks/sd_speed.py                       # 256 and 512 px, eager and XLA, and diffusers
  python benchmarks/sd_speed.py --sizes=512 --modes=eager,diffusers --precisions=float32,bfloat16

The peer is diffusers' `UNet2DConditionModel`, `AutoencoderKL` decoder and transformers'
`CLIPTextModel` (PyTorch on the CPU, its default threads, inference mode) with Stable
Diffusion 1.x's configuration, random weights, the same latent size and batch. It needs the
test extra (`pip install -e '.[test]'`); `--modes` without `diffusers` leaves it out.

One image with guidance, so every step runs the U-Net on a batch of 2 (unconditional and
conditional), as generation does. Random weights: speed does not depend on their values.
Each figure is the median of --repeats steps after a warm-up step (which traces and, with
XLA, compiles). Seconds per image = steps x step + text encoding + VAE decoding. Every
configuration keeps its networks in memory: at 512 px, run a few per process (24 GB holds
about six).
bfloat16 is Keras's `mixed_bfloat16` policy for the project and `.to(torch.bfloat16)` for
diffusers; ratios are against diffusers in float32 (its default) at the same size.
"""

import statistics
import time

from absl import app, flags

from xray.sampler import decode_to_uint8, encode_texts, initial_noise, sample_latents
from xray.weights import load_stable_diffusion

flags.DEFINE_list("sizes", ["256", "512"], "Image sizes in pixels (multiples of 128).")
flags.DEFINE_list("modes", ["eager", "xla", "diffusers"], "eager: Keras graph functions; xla: jit_compile=True; diffusers: the PyTorch peer.")
flags.DEFINE_integer("repeats", 3, "Timed steps per configuration (after one warm-up step).")
flags.DEFINE_integer("steps_per_image", 25, "Denoising steps counted in seconds per image.")
flags.DEFINE_string("tokenizer_path", "", "CLIP BPE file (default: $CLIP_BPE_PATH, else download).")
flags.DEFINE_list("precisions", ["float32"], "float32 and/or bfloat16, for both the project and diffusers.")
flags.register_validator("precisions", lambda values: set(values) <= {"float32", "bfloat16"},
                         "--precisions takes float32 and/or bfloat16")
FLAGS = flags.FLAGS
KERAS_PRECISION = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def measure(size, xla, precision):
    models = load_stable_diffusion(size, "random", tokenizer_path=FLAGS.tokenizer_path,
                                   precision=KERAS_PRECISION[precision], jit_compile=xla)
    encode_texts(models, ["Frontal chest X-ray", ""])  # Warm-up trace of the text encoder.
    start = time.perf_counter()
    context, unconditional = encode_texts(models, ["Frontal chest X-ray", ""])
    encode_seconds = time.perf_counter() - start
    marks = [time.perf_counter()]
    latents = sample_latents(models, initial_noise(0, size)[None], context[None], unconditional[None],
                             num_steps=FLAGS.repeats + 1, guidance_scale=7.5,
                             on_step=lambda step: marks.append(time.perf_counter()))
    step_seconds = statistics.median(b - a for a, b in zip(marks[1:], marks[2:]))
    decode_to_uint8(models, latents)  # Warm-up.
    start = time.perf_counter()
    decode_to_uint8(models, latents)
    decode_seconds = time.perf_counter() - start
    return step_seconds, encode_seconds + decode_seconds + FLAGS.steps_per_image * step_seconds


def measure_diffusers(size, precision):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # diffusers' U-Net defaults are SD 1.x's but for the text width (768); its VAE's are a toy's.
    unet, vae = UNet2DConditionModel(cross_attention_dim=768).eval(), AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                                hidden_act="quick_gelu", projection_dim=768)).eval()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
    unet, vae, text_encoder = unet.to(dtype), vae.to(dtype), text_encoder.to(dtype)
    latents = torch.randn(2, 4, size // 8, size // 8, dtype=dtype)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    with torch.inference_mode():
        text_encoder(tokens)  # Warm-up.
        start = time.perf_counter()
        context = text_encoder(tokens).last_hidden_state
        encode_seconds = time.perf_counter() - start
        marks = []
        for step in range(FLAGS.repeats + 1):
            unet(latents, 999 - step * 40, encoder_hidden_states=context)
            marks.append(time.perf_counter())
        step_seconds = statistics.median(b - a for a, b in zip(marks, marks[1:]))
        vae.decode(latents[:1])  # Warm-up.
        start = time.perf_counter()
        vae.decode(latents[:1])
        decode_seconds = time.perf_counter() - start
    return step_seconds, encode_seconds + decode_seconds + FLAGS.steps_per_image * step_seconds


def main(argv):
    del argv
    rows = []
    for size in map(int, FLAGS.sizes):
        for precision in FLAGS.precisions:
            for mode in FLAGS.modes:
                step, image = (measure_diffusers(size, precision) if mode == "diffusers"
                               else measure(size, xla=(mode == "xla"), precision=precision))
                rows.append((size, mode, precision, step, image))
                print(f"  measured {size} px {mode} {precision}: {step:.2f} s/step, {image:.0f} s/image", flush=True)
    print(f"\nStable Diffusion 1.x, U-Net batch 2 (guidance), median of {FLAGS.repeats} steps")
    print(f"| size | mode | precision | s/step | s/image ({FLAGS.steps_per_image} steps) | step time / diffusers float32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    peer = {size: step for size, mode, precision, step, _ in rows if (mode, precision) == ("diffusers", "float32")}
    for size, mode, precision, step, image in rows:
        ratio = f"{step / peer[size]:.2f}x" if size in peer else "-"
        print(f"| {size} | {mode} | {precision} | {step:.2f} | {image:.0f} | {ratio} |")


if __name__ == "__main__":
    app.run(main)
