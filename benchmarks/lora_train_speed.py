"""LoRA fine-tuning on this CPU: the project's training step against diffusers + PEFT, same run.

  python benchmarks/lora_train_speed.py                                   # 256 and 512 px, float32
  python benchmarks/lora_train_speed.py --sizes=512 --precisions=float32,bfloat16

Each row runs in a process of its own, so its peak memory (resident set, as the kernel counts
it) is its own. A row builds the U-Net with random weights, puts rank-`--rank` adapters on its
attention projections (q, k, v, out), and times `--steps` training steps at batch 1 after one
untimed step (graph tracing, allocation): noisy latents in, MSE on the noise, gradients for the
adapters only, one AdamW update (the project's with genlab-xray-finetune's schedule; diffusers'
constant rate). Latents and text states are random, as with cached latents: what is timed is
the U-Net's forward and backward pass and the update.

- project: `xray.training.trainer.DiffusionFineTuner` on KerasCV's U-Net with Keras's `enable_lora`,
  `mixed_bfloat16` for bfloat16 with the frozen weights stored in bfloat16 and the adapters in
  float32 (`build_network(frozen=True)`), TensorFlow's oneDNN kernels on and PyTorch kept out of
  the process, and one malloc arena per core, as genlab-xray-finetune runs it without --merge
  (`genlab.runtime.use_onednn_kernels`, `keep_torch_out`, `limit_malloc_arenas`).
- project_tf_kernels: the same with the kernels TensorFlow chooses by itself (oneDNN only on
  CPUs with AVX-512 VNNI/BF16 or AMX; `--nocpu_onednn`).
- project_ema: the project with `--ema_decay=0.999` as well; project_plain: with the recipe's
  options off (`--snr_gamma=0 --noise_offset=0 --max_grad_norm=0`). Min-SNR weights and offset
  noise come with the batch, so what their rows time is the weighting, the clipping and the
  average; the ratios to project_plain are printed last.
- diffusers: `UNet2DConditionModel` with SD 1.x's config, `add_adapter(LoraConfig(...))` as
  diffusers' `train_text_to_image_lora.py` does: base frozen and, for bfloat16, cast to bfloat16
  (its "all non-trainable weights to half-precision"), run under `torch.autocast(bfloat16)` as
  Accelerate's bf16 mixed precision runs it. Adapters float32, as the project's
  (`cast_training_params`; the script upcasts them only for float16, so its bfloat16 adapters
  are bfloat16, a few MB smaller). PyTorch gets as many threads as TensorFlow uses.

The headline is the ratio of seconds per step at matched precision; peak memory follows.
With `--profile`, each row also profiles one more step and prints where it went: the op types
with the most own (exclusive) time, TensorFlow's from its profiler's trace, PyTorch's from
`torch.profiler`, backward ops marked. Op times on two threads can add up to more than the step.
The project's rows also print TensorFlow's allocator at its peak in that step: the memory in
use, and the tensors the step made that were alive then, by the op that made them (XLA's
functions' outputs and temporaries go unnamed).
"""

import collections
import glob
import json
import os
import re
import statistics
import tempfile
import time

from absl import app, flags
from machine import describe_machine, print_row_result, run_row_processes

from genlab.runtime import keep_torch_out, limit_malloc_arenas, use_onednn_kernels

flags.DEFINE_list("sizes", ["256", "512"], "Image sizes in pixels (multiples of 128).")
flags.DEFINE_list("precisions", ["float32"], "float32 and/or bfloat16.")
flags.DEFINE_list(
    "modes",
    ["project", "diffusers"],
    "Which trainers to time: project, project_tf_kernels, project_ema, project_plain, diffusers.",
)
flags.DEFINE_integer("steps", 3, "Timed training steps per row.", lower_bound=1)
flags.DEFINE_integer("rank", 4, "LoRA rank.")
flags.DEFINE_bool("profile", False, "Also profile one step per row and print its op types with the most time.")
flags.DEFINE_string("row", "", "Internal: run one row, given as JSON, and print its result.")
FLAGS = flags.FLAGS
# The FinetuneConfig settings each project row trains with, beyond genlab-xray-finetune's defaults.
RECIPES = {
    "project": {},
    "project_tf_kernels": {},
    "project_ema": {"ema_decay": 0.999},
    "project_plain": {"snr_gamma": 0.0, "noise_offset": 0.0, "max_grad_norm": 0.0},
}


TOP_OPS = 12
# TensorFlow ops that hold other ops (function calls, loops): their time is their contents'.
_CONTAINERS = ("PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If", "StatelessIf", "Case")


def trace_planes(logdir):
    """The planes (one per device or host part) of the `tf.profiler.experimental` trace in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        yield from space.planes


def stat_value(plane, stat):
    """An event's statistic in a trace plane: strings may be stored once in the plane and referred to."""
    if stat.ref_value:
        return plane.stat_metadata[stat.ref_value].name
    return stat.str_value or stat.int64_value or stat.uint64_value


def tensorflow_op_seconds(logdir):
    """{op type: own seconds} from a `tf.profiler.experimental` trace in `logdir`; gradient ops
    (under `gradient_tape/`) are marked "backward"."""
    seconds = collections.Counter()
    for plane in trace_planes(logdir):
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # The executor's threads, where ops run.
                continue
            for event in line.events:
                name, _, op_type = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if name and not name.endswith(":") and op_type not in _CONTAINERS:  # "name:Type", not "Executor::Step".
                    seconds[op_type + (" (backward)" if "gradient_tape/" in name else "")] += event.duration_ps * 1e-12
    return seconds


def tensorflow_live_at_peak(logdir):
    """(the allocator's peak in use in GiB, {what: MiB}) from the allocator's events in a trace:
    the tensors made during the traced step and alive at its peak, by the op that made them
    (its last two name parts, layer numbers dropped) and dtype."""
    import tensorflow as tf

    events = []
    for plane in trace_planes(logdir):
        for line in plane.lines:
            for event in line.events:
                kind = plane.event_metadata[event.metadata_id].name
                if kind in ("MemoryAllocation", "MemoryDeallocation"):
                    stats = {plane.stat_metadata[s.metadata_id].name: stat_value(plane, s) for s in event.stats}
                    events.append((line.timestamp_ns * 1000 + event.offset_ps, kind, stats))
    live, peak, at_peak = {}, 0, {}
    for _, kind, stats in sorted(events, key=lambda event: event[0]):
        if kind == "MemoryAllocation":
            live[stats["addr"]] = stats
        else:
            live.pop(stats["addr"], None)
        if stats.get("bytes_allocated", 0) > peak:
            peak, at_peak = stats["bytes_allocated"], dict(live)
    mib = collections.Counter()
    for stats in at_peak.values():
        op = re.sub(r"_\d+", "", "/".join(str(stats.get("tf_op") or "unnamed (XLA's)").split("/")[-2:]))
        dtype = int(stats.get("data_type") or 0)
        mib[f"{op} ({tf.as_dtype(dtype).name if dtype else '?'})"] += stats.get("requested_bytes", 0) / 2**20
    return peak / 2**30, mib


def print_profile(result):
    total = result["op_seconds"]
    print(f"  profiled step: {total:.2f} s of op time; the op types with the most:")
    for op_type, value in result["top_ops"]:
        print(f"  {value:7.2f} s  {100 * value / total:4.1f}%  {op_type}")
    if "live_mib" in result:
        live = sum(value for _, value in result["live_mib"])
        print(
            f"  the allocator's peak: {result['allocator_peak_gib']:.2f} GiB in use, of which the step's tensors "
            f"{live / 1024:.2f} GiB; the largest, by the op that made them:"
        )
        for what, value in result["live_mib"][:TOP_OPS]:
            print(f"  {value:7.1f} MiB  {what}")


def project_row(size, precision, steps, rank, onednn=True, profile=False, settings=None):
    if not keep_torch_out() or not limit_malloc_arenas() or (onednn and not use_onednn_kernels()):
        raise RuntimeError("KerasCV or TensorFlow loaded before the row could set up its process as the program does")
    import keras
    import numpy as np
    import tensorflow as tf

    from xray.config import FinetuneConfig
    from xray.sd.networks import build_network
    from xray.sd.sampler import timestep_embedding
    from xray.training.adapters import add_adapters
    from xray.training.kernels import use_training_kernels
    from xray.training.trainer import DiffusionFineTuner, training_optimizer

    unet = build_network(
        "diffusion_model", size, "mixed_bfloat16" if precision == "bfloat16" else "float32", frozen=True
    )
    for variable in unet.weights:
        variable.trainable = False
    add_adapters("diffusion_model", unet, rank, ("attention",))
    use_training_kernels(unet)  # As fine-tuning runs it.
    model = DiffusionFineTuner(unet)
    model.compile(optimizer=training_optimizer(FinetuneConfig(**(settings or {}))))
    rng = np.random.default_rng(0)
    side = size // 8
    batch = {
        "x": rng.standard_normal((1, side, side, 4), dtype=np.float32),
        "signal": np.float32([0.7]),
        "noise_level": np.float32([0.7]),
        "timestep_embedding": timestep_embedding(500, 1),
        "noise": rng.standard_normal((1, side, side, 4), dtype=np.float32),
        "loss_weight": np.float32([1.0]),
        "context": rng.standard_normal((1, 77, 768), dtype=np.float32),
    }
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    marks = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None: marks.append(time.perf_counter())
    )
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, callbacks=[timer], verbose=0)
    times, ops, memory = [b - a for a, b in zip([start] + marks[:-1], marks)][1:], None, {}
    if profile:
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(
                logdir, options=tf.profiler.experimental.ProfilerOptions(host_tracer_level=3)
            )
            model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
            tf.profiler.experimental.stop()
            ops = tensorflow_op_seconds(logdir)
            peak, live = tensorflow_live_at_peak(logdir)
            memory = {"allocator_peak_gib": peak, "live_mib": live.most_common()}
    return times, ops, memory


def diffusers_row(size, precision, steps, rank, threads, profile=False):
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768)  # diffusers' defaults are SD 1.x's but for the text width.
    unet.requires_grad_(False)
    if precision == "bfloat16":
        unet.to(dtype=torch.bfloat16)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"]
        )
    )
    cast_training_params(unet, dtype=torch.float32)  # PEFT makes adapters in the base's dtype.
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    side = size // 8
    latents, noise = torch.randn(1, 4, side, side), torch.randn(1, 4, side, side)
    context, timestep = torch.randn(1, 77, 768), torch.tensor([500])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            predicted = unet(0.7 * latents + 0.7 * noise, timestep, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(predicted.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            step()
        seconds = collections.Counter()
        for event in profiler.key_averages():
            if event.key.startswith("aten::"):  # The ops themselves, not autograd's or the optimizer's wrappers.
                seconds[event.key] += event.self_cpu_time_total * 1e-6
        return times[1:], seconds
    return times[1:], None


def run_row(row):
    args = (row["size"], row["precision"], row["steps"], row["rank"])
    if row["mode"] == "diffusers":
        (times, ops), memory = diffusers_row(*args, row["threads"], profile=row["profile"]), {}
    else:
        times, ops, memory = project_row(
            *args, onednn=row["mode"] != "project_tf_kernels", profile=row["profile"], settings=RECIPES[row["mode"]]
        )
    profile = {"op_seconds": sum(ops.values()), "top_ops": ops.most_common(TOP_OPS)} if ops else {}
    print_row_result(row, seconds_per_step=statistics.median(times), **profile, **memory)


def main(argv):
    del argv
    if FLAGS.row:
        run_row(json.loads(FLAGS.row))
        return
    print(describe_machine())
    results = {}
    rows = [
        {
            "mode": mode,
            "size": size,
            "precision": precision,
            "steps": FLAGS.steps,
            "rank": FLAGS.rank,
            "profile": FLAGS.profile,
        }
        for size in map(int, FLAGS.sizes)
        for precision in FLAGS.precisions
        for mode in FLAGS.modes
    ]
    for row, result in run_row_processes(__file__, rows):
        results[(row["size"], row["precision"], row["mode"])] = result
        print(
            f"{row['mode']:14s} {row['size']} px {row['precision']:8s} {result['seconds_per_step']:7.2f} s/step  "
            f"peak {result['peak_gib']:5.2f} GiB  ({result['threads']} threads)",
            flush=True,
        )
        if FLAGS.profile:
            print_profile(result)
    for size in map(int, FLAGS.sizes):
        for precision in FLAGS.precisions:
            ours, theirs = results.get((size, precision, "project")), results.get((size, precision, "diffusers"))
            if ours and theirs:
                print(
                    f"{size} px {precision}: project / diffusers = "
                    f"{ours['seconds_per_step'] / theirs['seconds_per_step']:.2f}x "
                    f"time per step, {ours['peak_gib'] / theirs['peak_gib']:.2f}x peak memory"
                )
            plain = results.get((size, precision, "project_plain"))
            for mode in ("project", "project_ema"):
                if plain and (size, precision, mode) in results:
                    ratio = results[(size, precision, mode)]["seconds_per_step"] / plain["seconds_per_step"]
                    print(f"{size} px {precision}: {mode} / project_plain = {ratio:.3f}x time per step")


if __name__ == "__main__":
    app.run(main)
