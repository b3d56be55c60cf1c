"""GAN training throughput with MultiWorkerMirroredStrategy: 1 and 2 worker processes here.

Each worker is a `genlab-train-gan --strategy=multi_worker` process with its own
`TF_CONFIG` on loopback, as on separate machines. Images/second is the images of one epoch
over the chief's median epoch time (history.csv), leaving out the first epoch (tracing).
On one 2-core machine the workers share the cores, so this measures the strategy's
overhead rather than a speed-up; on separate machines each worker brings its own.

  python benchmarks/multi_worker.py --workers=1,2 --epochs=4 --num_train_images=6400
"""

import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

from gan.callbacks import read_history
from genlab.distribute import local_tf_configs
from genlab.mnist import ENV_VAR

flags.DEFINE_list("workers", ["1", "2"], "Worker counts to measure.")
flags.DEFINE_integer("epochs", 4, "Epochs per run; all but the first are timed.", lower_bound=2)
flags.DEFINE_integer("num_train_images", 6400, "Training images per epoch.", lower_bound=64)
flags.DEFINE_integer("batch_size", 64, "Global batch size (split over the workers).", lower_bound=1)
FLAGS = flags.FLAGS


def images_per_second(num_workers, output_dir):
    args = [
        "--strategy=multi_worker",
        f"--epochs={FLAGS.epochs}",
        f"--batch_size={FLAGS.batch_size}",
        f"--num_train_images={FLAGS.num_train_images}",
        f"--mnist_path={os.environ.get(ENV_VAR, '')}",
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "scripts.train_gan", *args, f"--output_dir={output_dir}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=tf_config),
        )
        for tf_config in local_tf_configs(num_workers)
    ]
    for worker in workers:
        _, stderr = worker.communicate()
        if worker.returncode:
            sys.exit(f"a worker failed:\n{stderr[-2000:]}")
    seconds = statistics.median(
        float(row["seconds"]) for row in read_history(os.path.join(output_dir, "history.csv"))[1:]
    )
    images = FLAGS.num_train_images // FLAGS.batch_size * FLAGS.batch_size
    return images / seconds


def main(argv):
    del argv
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in map(int, FLAGS.workers):
            rates[count] = images_per_second(count, os.path.join(tmp, f"workers_{count}"))
            print(f"{count} worker(s): {rates[count]:.0f} images/s", flush=True)
    first = min(rates)
    for count, rate in rates.items():
        print(f"{count} worker(s): {rate:.0f} images/s, {rate / rates[first]:.2f}x of {first} worker(s)")


if __name__ == "__main__":
    app.run(main)
