"""Self-attention at the U-Net's highest resolution, the project's layer against diffusers', same run.

  python benchmarks/attention_speed.py                        # 256 and 512 px, float32
  python benchmarks/attention_speed.py --sizes=512 --precisions=float32,bfloat16

Stable Diffusion 1.x's U-Net runs five transformer blocks at its highest resolution, where
self-attention is quadratic in the (size/8)^2 latent pixels: 1,024 tokens at 256 px, 4,096 at
512 px. This times one such layer (320 channels, 8 heads of 40), projections included:

- inference: a forward pass at batch 2 (guidance's pair), as in generation;
- training: forward and backward at batch 1, gradients for the input and every weight, as in a
  LoRA step's pass through the layer.

- project: KerasCV's `CrossAttention` (matmul, softmax, matmul) in a `tf.function`, as generation
  runs it;
- project_chunked: the same layer with `xray.training.kernels.attention` (query chunks, probabilities computed
  again in the backward pass, products in the inputs' dtype, the softmax's exponentials in XLA
  functions), as fine-tuning runs it;
- diffusers: diffusers' `Attention` with its default processor, which calls PyTorch's fused
  `scaled_dot_product_attention`;
- diffusers_unfused: the same layer with diffusers' classic `AttnProcessor` (matmul, softmax,
  matmul, as KerasCV does), which tells the fused kernel's share from the rest of PyTorch.

Each row runs in a process of its own (peak resident memory is its own), with as many PyTorch
threads as TensorFlow uses; the median of `--repeats` calls after an untimed one is printed.
"""

import json
import statistics
import time

from absl import app, flags
from machine import describe_machine, print_row_result, run_row_processes

flags.DEFINE_list("sizes", ["256", "512"], "Image sizes in pixels (multiples of 128).")
flags.DEFINE_list("precisions", ["float32"], "float32 and/or bfloat16.")
flags.DEFINE_list(
    "passes", ["inference", "training"], "inference (forward, batch 2) and/or training (forward and backward, batch 1)."
)
flags.DEFINE_list("modes", ["project", "project_chunked", "diffusers", "diffusers_unfused"], "Which layers to time.")
flags.DEFINE_integer("repeats", 5, "Timed calls per row.", lower_bound=1)
flags.DEFINE_string("row", "", "Internal: run one row, given as JSON, and print its result.")
FLAGS = flags.FLAGS

CHANNELS, HEADS = 320, 8  # The U-Net's first level: 8 heads of 40.


def project_row(tokens, batch, training, precision, repeats, chunked):
    import keras
    import tensorflow as tf
    from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

    from xray.training.kernels import use_training_kernels

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    inputs = keras.Input((tokens, CHANNELS))
    layer = keras.Model(inputs, CrossAttention(HEADS, CHANNELS // HEADS)(inputs))
    if chunked:
        use_training_kernels(layer)
    x = tf.Variable(tf.random.normal((batch, tokens, CHANNELS)))

    @tf.function
    def call():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32))
        return tape.gradient(loss, [x] + layer.trainable_weights) if training else loss

    return _time(lambda: tf.nest.map_structure(lambda t: t.numpy(), call()), repeats)


def diffusers_row(tokens, batch, training, precision, repeats, threads, fused):
    import torch
    from diffusers.models.attention_processor import Attention, AttnProcessor

    torch.set_num_threads(threads)
    layer = Attention(CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS)
    if not fused:
        layer.set_processor(AttnProcessor())
    x = torch.randn(batch, tokens, CHANNELS, requires_grad=training)

    def call():
        with (
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"),
            torch.set_grad_enabled(training),
        ):
            loss = layer(x).float().sum()
        if training:
            loss.backward()

    return _time(call, repeats)


def _time(call, repeats):
    call()  # Tracing, allocation.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def run_row(row):
    tokens, training = (row["size"] // 8) ** 2, row["pass"] == "training"
    batch = 1 if training else 2
    if row["mode"].startswith("project"):
        times = project_row(
            tokens, batch, training, row["precision"], row["repeats"], chunked=row["mode"] == "project_chunked"
        )
    else:
        times = diffusers_row(
            tokens, batch, training, row["precision"], row["repeats"], row["threads"], fused=row["mode"] == "diffusers"
        )
    print_row_result(row, tokens=tokens, seconds=statistics.median(times))


def main(argv):
    del argv
    if FLAGS.row:
        run_row(json.loads(FLAGS.row))
        return
    print(describe_machine())
    results = {}
    rows = [
        {"mode": mode, "size": size, "precision": precision, "pass": kind, "repeats": FLAGS.repeats}
        for size in map(int, FLAGS.sizes)
        for precision in FLAGS.precisions
        for kind in FLAGS.passes
        for mode in FLAGS.modes
    ]
    for row, result in run_row_processes(__file__, rows):
        results[(row["size"], row["precision"], row["pass"], row["mode"])] = result
        print(
            f"{row['mode']:17s} {row['size']} px ({result['tokens']} tokens) {row['precision']:8s} {row['pass']:9s} "
            f"{result['seconds'] * 1000:8.1f} ms  peak {result['peak_gib']:5.2f} GiB  ({result['threads']} threads)",
            flush=True,
        )
    for (size, precision, kind, mode), result in results.items():
        peer = results.get((size, precision, kind, "diffusers"))
        if mode != "diffusers" and peer:
            print(
                f"{size} px {precision} {kind}: {mode} / diffusers = {result['seconds'] / peer['seconds']:.2f}x time; "
                f"x5 blocks a U-Net pass: {5 * (result['seconds'] - peer['seconds']):+.2f} s"
            )


if __name__ == "__main__":
    app.run(main)
