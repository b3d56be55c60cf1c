"""LeNet-5 with the default flags: MNIST test accuracy and training time, median of repeats.

Trains `--repeats` times with different seeds (each a full default run, as
`genlab-train-lenet` does) and prints each run and the medians. The target is 99.3% test
accuracy within 60 s of training on 2 CPU cores.

  python benchmarks/lenet_speed.py --repeats=3
"""

import os
import statistics
import tempfile

from absl import app, flags

from genlab.mnist import ENV_VAR
from lenet.config import LeNetConfig
from lenet.train import train

flags.DEFINE_integer("repeats", 3, "Training runs (the median is reported).", lower_bound=1)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(FLAGS.repeats):
            config = LeNetConfig(seed=seed, mnist_path=os.environ.get(ENV_VAR, ""))
            result = train(config, os.path.join(tmp, f"lenet_{seed}.keras"), verbose=0)
            runs.append((result.test_accuracy, result.seconds))
            print(f"seed {seed}: {result.test_accuracy:.2%} test accuracy, {result.seconds:.1f} s training", flush=True)
    accuracy = statistics.median(a for a, _ in runs)
    seconds = statistics.median(s for _, s in runs)
    print(
        f"LeNet-5, {LeNetConfig.epochs} epochs, median of {len(runs)}: {accuracy:.2%} accuracy, {seconds:.1f} s "
        f"(target: >= 99.30% in <= 60 s)"
    )


if __name__ == "__main__":
    app.run(main)
