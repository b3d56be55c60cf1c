"""Where a Stable Diffusion U-Net call spends its time, by layer type: the project beside diffusers.

Builds KerasCV's U-Net (the project) and diffusers' `UNet2DConditionModel` with Stable Diffusion
1.x's configuration, both with random weights, runs each eagerly on a batch of 2 (guidance) once
to warm up and once timed, and prints each kind of layer's own seconds (time in its call less
the time in the layers it calls), so the rows add up to the call. Eager execution runs op by
op, so each layer's time is its own; the call is slower than the graph functions generation
uses, but the shares are what matter. Both run at the same precision with TensorFlow's and
PyTorch's own kernel choices (genlab-xray's oneDNN weight cache works in graphs only: its
effect is in docs/design.md). PyTorch gets as many threads as TensorFlow uses.

  python benchmarks/sd_profile.py --size=512
"""

import collections
import time

import numpy as np
from absl import app, flags
from machine import describe_machine, describe_onednn, tensorflow_threads

flags.DEFINE_integer("size", 512, "Image size in pixels (a multiple of 128).")
flags.DEFINE_list("modes", ["project", "diffusers"], "project: KerasCV's U-Net; diffusers: the PyTorch peer.")
FLAGS = flags.FLAGS

# Each library's layer classes, sorted into what they compute; the rest is "everything else"
# (residual blocks' own additions and activations, embeddings, reshapes, up-sampling).
KINDS = {
    "Conv2D": "convolutions",
    "Conv2d": "convolutions",
    "Dense": "linear layers (attention projections, feed-forward)",
    "Linear": "linear layers (attention projections, feed-forward)",
    "CrossAttention": "attention less its projections",
    "Attention": "attention less its projections",
    "GEGLU": "GEGLU's gate and GELU",
    "GroupNormalization": "normalization",
    "GroupNorm": "normalization",
    "LayerNormalization": "normalization",
    "LayerNorm": "normalization",
}
OTHER = "everything else"


class Clock:
    """Adds each layer's own (exclusive) seconds to its kind's total; `enter` and `leave` bracket a call."""

    def __init__(self):
        self.own_seconds = collections.Counter()
        self._open = []  # [kind, start, seconds in children] for each call in progress.

    def enter(self, kind):
        self._open.append([kind, time.perf_counter(), 0.0])

    def leave(self):
        kind, start, children = self._open.pop()
        seconds = time.perf_counter() - start
        if self._open:
            self._open[-1][2] += seconds
        self.own_seconds[kind] += seconds - children


def profile_project(size, clock):
    from xray.sd.networks import build_network

    unet = build_network("diffusion_model", size, "float32")
    for layer in {id(layer): layer for layer in unet._flatten_layers(include_self=False)}.values():

        def timed_call(*args, call=layer.call, kind=KINDS.get(type(layer).__name__, OTHER), **kwargs):
            clock.enter(kind)
            try:
                return call(*args, **kwargs)
            finally:
                clock.leave()

        layer.call = timed_call
    rng = np.random.default_rng(0)
    latent = size // 8
    inputs = {
        "latent": rng.standard_normal((2, latent, latent, 4), dtype=np.float32),
        "timestep_embedding": rng.standard_normal((2, 320), dtype=np.float32),
        "context": rng.standard_normal((2, 77, 768), dtype=np.float32),
    }
    return lambda: np.asarray(unet(inputs))


def profile_diffusers(size, clock):
    import torch
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(tensorflow_threads())
    unet = UNet2DConditionModel(cross_attention_dim=768).eval()
    for module in unet.modules():
        if module is not unet:
            kind = KINDS.get(type(module).__name__, OTHER)
            module.register_forward_pre_hook(lambda module, args, kind=kind: clock.enter(kind))
            module.register_forward_hook(lambda module, args, output: clock.leave())
    latent = torch.randn(2, 4, size // 8, size // 8)
    context = torch.randn(2, 77, 768)

    @torch.inference_mode()
    def call():
        return unet(latent, 500, encoder_hidden_states=context).sample

    return call


def main(argv):
    del argv
    print(describe_machine())
    print(describe_onednn("TensorFlow"))
    columns = {}
    for mode in FLAGS.modes:
        clock = Clock()
        call = (profile_project if mode == "project" else profile_diffusers)(FLAGS.size, clock)
        call()  # Warm-up.
        clock.own_seconds.clear()
        start = time.perf_counter()
        call()
        columns[mode] = (time.perf_counter() - start, dict(clock.own_seconds))
    print(
        f"\nStable Diffusion 1.x U-Net, {FLAGS.size} px, batch 2, float32, one eager call: own seconds by layer kind "
        "(share)"
    )
    print("| layer kind | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns))
    kinds = sorted(
        {kind for _, seconds in columns.values() for kind in seconds},
        key=lambda kind: -max(seconds.get(kind, 0.0) for _, seconds in columns.values()),
    )
    for kind in kinds:
        cells = [
            f"{seconds.get(kind, 0.0):.2f} ({seconds.get(kind, 0.0) / total:.0%})"
            for total, seconds in columns.values()
        ]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("| whole call | " + " | ".join(f"{total:.2f}" for total, _ in columns.values()) + " |")


if __name__ == "__main__":
    app.run(main)
