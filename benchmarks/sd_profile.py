"""Where the X-ray generator's U-Net spends a denoising step: seconds by layer type.

Builds KerasCV's Stable Diffusion U-Net with random weights, runs it eagerly on a batch of 2
(guidance) once to warm up and once timed, and prints each layer type's own seconds (time
in its `call` less the time in the layers it calls), so the rows add up to the step. Eager
execution runs op by op, so each layer's time is its own; the step is slower than in the
graph functions generation uses, but the shares are what matter.

  python benchmarks/sd_profile.py --size=512
"""

import collections
import time

import numpy as np
from absl import app, flags

from xray.weights import build_network

flags.DEFINE_integer("size", 512, "Image size in pixels (a multiple of 128).")
FLAGS = flags.FLAGS


class LayerClock:
    """Wraps every layer's `call` to add its own (exclusive) seconds to its type's total."""

    def __init__(self, model):
        self.own_seconds = collections.Counter()
        self.calls = collections.Counter()
        self._child_seconds = []  # One running total per call in progress.
        for layer in {id(layer): layer for layer in model._flatten_layers(include_self=False)}.values():
            layer.call = self._timed(type(layer).__name__, layer.call)

    def _timed(self, name, call):
        def timed_call(*args, **kwargs):
            self._child_seconds.append(0.0)
            start = time.perf_counter()
            outputs = call(*args, **kwargs)
            seconds = time.perf_counter() - start
            children = self._child_seconds.pop()
            if self._child_seconds:
                self._child_seconds[-1] += seconds
            self.own_seconds[name] += seconds - children
            self.calls[name] += 1
            return outputs

        return timed_call

    def reset(self):
        self.own_seconds.clear()
        self.calls.clear()


def main(argv):
    del argv
    unet = build_network("diffusion_model", FLAGS.size, "float32")
    latent_size = FLAGS.size // 8
    rng = np.random.default_rng(0)
    inputs = {"latent": rng.standard_normal((2, latent_size, latent_size, 4), dtype=np.float32),
              "timestep_embedding": rng.standard_normal((2, 320), dtype=np.float32),
              "context": rng.standard_normal((2, 77, 768), dtype=np.float32)}
    clock = LayerClock(unet)
    unet(inputs)  # Warm-up.
    clock.reset()
    start = time.perf_counter()
    unet(inputs)
    total = time.perf_counter() - start
    print(f"KerasCV U-Net, {FLAGS.size} px, batch 2, one eager call: {total:.2f} s")
    print("| layer type | own seconds | share | calls |\n| --- | --- | --- | --- |")
    for name, seconds in clock.own_seconds.most_common():
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} | {clock.calls[name]} |")


if __name__ == "__main__":
    app.run(main)
