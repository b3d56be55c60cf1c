"""GAN time to quality: MNIST-FID against training seconds, this project vs TensorFlow's DCGAN tutorial.

Both train on real MNIST on this machine in the same run. After every epoch the generator
draws `--samples` digits (fixed noise) that the reference judge (`lenet.reference`, the same
LeNet-5 on every machine) measures: MNIST-FID against the 10,000 test digits, the MNIST score,
the class shares, and in conditional mode the share classified as the intended digit; the
FID and score of the generator's latest weights too (the project samples from their moving
average); and the median distance from a digit to its nearest training digit, which real test
digits give as the reference and a generator that copied would bring near 0. Real training
digits, as many as `--samples`, are measured the same way: that row is the floor a generator is
compared with, at the same sample count.

The clock counts everything a user waits for before and during training, and leaves the
judging out: from the call that starts a run (loading MNIST, the project's k-means clustering
of the training images, building and compiling) through each epoch's time in `fit`, with the
project's own per-epoch callbacks (sample grid, history, checkpoint) in it.

The peer is the tutorial as written (`benchmarks/tutorial_dcgan.py`). The project runs
`gan.train.train` with its default `TrainConfig` (unconditional, conditioned on clusters),
with `conditional=True`, with `clusters=0`, with `clusters=100`, and with Keras's own Adam
(`fused_adam=False`).

Prints the tutorial's FID after its last epoch, when the project first reached that FID,
the ratio of the two training times, each run's last figures beside real digits'; writes
`time_to_quality.csv` and `time_to_quality.png` (FID against training minutes) to
`--output_dir`.

  python benchmarks/gan_time_to_quality.py --output_dir=runs/time_to_quality
  python benchmarks/gan_time_to_quality.py --runs=project_conditional   # conditional mode only
  python benchmarks/gan_time_to_quality.py --runs=project,project_no_clusters   # what clusters are worth
  python benchmarks/gan_time_to_quality.py --runs=project,project_100_clusters  # what finer clusters are worth
  python benchmarks/gan_time_to_quality.py --runs=project,project_keras_adam  # what the fused Adam is worth
"""

import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags
from machine import describe_machine
from tutorial_dcgan import SETTINGS as TUTORIAL
from tutorial_dcgan import build_tutorial

from gan.clusters import cluster_sampler, nearest_rows
from gan.config import TrainConfig
from gan.train import mnist_for_gan, train
from genlab import plots
from genlab.files import write_csv
from genlab.images import to_uint8
from genlab.mnist import ENV_VAR, NUM_CLASSES, load_mnist
from genlab.noise import gaussian_noise
from lenet import reference
from lenet.metrics import quality_report

RUNS = (
    "project",
    "tutorial",
    "project_conditional",
    "project_no_clusters",
    "project_100_clusters",
    "project_keras_adam",
)
PROJECT_RUNS = {
    "project": {},
    "project_conditional": dict(conditional=True),
    "project_no_clusters": dict(clusters=0),
    "project_100_clusters": dict(clusters=100),
    "project_keras_adam": dict(fused_adam=False),
}
flags.DEFINE_list("runs", ["project", "tutorial"], f"Which runs, in order, from {', '.join(RUNS)}.")
flags.DEFINE_integer(
    "tutorial_epochs", 10, "Epochs for the tutorial's configuration (its own default is 50).", lower_bound=1
)
flags.DEFINE_integer("project_epochs", 0, "Epochs for the project's runs (0: TrainConfig's default).", lower_bound=0)
flags.DEFINE_integer("samples", 5000, "Generated digits per evaluation.", lower_bound=100)
flags.DEFINE_string("output_dir", "runs/time_to_quality", "Where the CSV, the plot and the runs' outputs go.")
FLAGS = flags.FLAGS


class QualityClock(keras.callbacks.Callback):
    """Counts the set-up and each epoch's training time, then judges the generator's digits (untimed)."""

    def __init__(self, name, judge, test_features, training_digits, noise, labels, rows):
        super().__init__()
        self.name, self.judge, self.test_features = name, judge, test_features
        self.training_digits = training_digits
        self.noise, self.labels, self.rows = noise, labels, rows
        self.training_seconds = 0.0
        self._run_start = time.perf_counter()  # Made just before the run starts.

    def on_train_begin(self, logs=None):
        # Set-up before the first epoch: loading, clustering (project), building, compiling.
        self.training_seconds = time.perf_counter() - self._run_start
        # The project samples from its averaged generator; its latest weights, judged on the
        # same noise, show what the averaging is worth on the very same training run.
        shares = getattr(self.model, "cluster_shares", None)
        self.latest = self.model.generator if shares is None else cluster_sampler(self.model.generator, shares)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.training_seconds += time.perf_counter() - self._start
        report, images = self._judge(self.model.generate)
        shares = report["class_distribution"]
        latest, _ = self._judge(
            lambda noise, labels: self.latest(noise if labels is None else [noise, labels], training=False)
        )
        row = {
            "run": self.name,
            "epoch": epoch + 1,
            "training_seconds": round(self.training_seconds, 1),
            "mnist_fid": round(report["mnist_fid"], 3),
            "mnist_score": round(report["mnist_score"], 3),
            "class_entropy_bits": round(report["class_entropy_bits"], 3),
            "min_class_share": round(min(shares), 4),
            "max_class_share": round(max(shares), 4),
            "accuracy_vs_intended": round(report.get("accuracy_vs_intended", float("nan")), 4),
            "latest_weights_fid": round(latest["mnist_fid"], 3),
            "latest_weights_score": round(latest["mnist_score"], 3),
            "nearest_training_distance": round(median_nearest_distance(images, self.training_digits), 2),
        }
        self.rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    def _judge(self, generate):
        images = np.concatenate(
            [
                generate(self.noise[i : i + 500], None if self.labels is None else self.labels[i : i + 500]).numpy()
                for i in range(0, len(self.noise), 500)
            ]
        )
        images = to_uint8(images)
        probabilities, features = self.judge.predict(images.astype("float32"), batch_size=1000, verbose=0)
        return quality_report(probabilities, features, self.test_features, self.labels), images


def median_nearest_distance(digits, training_digits):
    """The median Euclidean distance (pixels in [0, 1]) from each of `digits` (uint8) to its nearest
    training digit (flattened, in [0, 1]): a generator that copied its training set would be near 0,
    where real test digits sit at their own distance, the reference."""
    flat = digits.reshape(len(digits), -1).astype(np.float32) / 255.0
    _, squared = nearest_rows(flat, training_digits, block_rows=500)  # 500 x 60,000 distances at a time.
    return float(np.median(np.sqrt(squared)))


def run_tutorial(clock, mnist_path):
    keras.utils.set_random_seed(0)
    images, labels = mnist_for_gan(TrainConfig(mnist_path=mnist_path))
    model = build_tutorial()
    data = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(60000).batch(TUTORIAL["batch_size"])
    model.fit(data, epochs=FLAGS.tutorial_epochs, callbacks=[clock], verbose=0)


def run_project(clock, mnist_path, output_dir, settings):
    shutil.rmtree(output_dir, ignore_errors=True)  # Else `train` would resume an earlier benchmark's run.
    config = TrainConfig(mnist_path=mnist_path, **settings)
    if FLAGS.project_epochs:
        config.epochs = FLAGS.project_epochs
    train(config, output_dir, verbose=0, extra_callbacks=[clock])


def time_to_reach(rows, target_fid):
    """Training seconds at the first evaluation with FID <= target (None if never)."""
    return next((row["training_seconds"] for row in rows if row["mnist_fid"] <= target_fid), None)


def real_digits_row(judge, test_features, training_digits, count, mnist):
    """The floor: `count` real training digits of `mnist` (Keras's tuples), measured exactly as the
    generators' digits are; the distance to the nearest training digit is real test digits' (a
    training digit's is 0)."""
    (x_train, y_train), (x_test, _) = mnist
    index = np.random.default_rng(1).choice(len(x_train), size=count, replace=False)
    probabilities, features = judge.predict(x_train[index][..., None].astype("float32"), batch_size=1000, verbose=0)
    report = quality_report(probabilities, features, test_features, y_train[index])
    shares = report["class_distribution"]
    return {
        "run": "real_mnist",
        "epoch": 0,
        "training_seconds": 0.0,
        "mnist_fid": round(report["mnist_fid"], 3),
        "mnist_score": round(report["mnist_score"], 3),
        "class_entropy_bits": round(report["class_entropy_bits"], 3),
        "min_class_share": round(min(shares), 4),
        "max_class_share": round(max(shares), 4),
        "accuracy_vs_intended": round(report["accuracy_vs_intended"], 4),
        "nearest_training_distance": round(median_nearest_distance(x_test[:count], training_digits), 2),
    }


def main(argv):
    del argv
    unknown = set(FLAGS.runs) - set(RUNS)
    if unknown:
        raise app.UsageError(f"--runs: unknown {', '.join(sorted(unknown))}; choose from {', '.join(RUNS)}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    print(describe_machine())
    mnist_path = os.environ.get(ENV_VAR, "")
    judge = reference.load_reference_judge()
    print(f"Judge: {reference.describe()}; {FLAGS.samples} digits per evaluation", flush=True)
    mnist = load_mnist(mnist_path or None)
    (x_train, _), (x_test, _) = mnist
    _, test_features = judge.predict(x_test[..., None].astype("float32"), batch_size=1000, verbose=0)
    training_digits = x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0
    real = real_digits_row(judge, test_features, training_digits, FLAGS.samples, mnist)
    print("  ".join(f"{k}={v}" for k, v in real.items()), flush=True)

    rows_by_run = {"real_mnist": [real]}
    for name in FLAGS.runs:
        print(f"== {name}", flush=True)
        rows = rows_by_run[name] = []
        conditional = name == "project_conditional"
        noise_dim = TUTORIAL["noise_dim"] if name == "tutorial" else TrainConfig.noise_dim
        noise = gaussian_noise(1, (FLAGS.samples, noise_dim))
        labels = (np.arange(FLAGS.samples) % NUM_CLASSES).astype("int32") if conditional else None
        clock = QualityClock(name, judge, test_features, training_digits, noise, labels, rows)
        if name == "tutorial":
            run_tutorial(clock, mnist_path)
        else:
            run_project(clock, mnist_path, os.path.join(FLAGS.output_dir, name), PROJECT_RUNS[name])
        _save(rows_by_run)  # After each run, so a long benchmark stopped early keeps what it measured.

    print(f"\n== summary ({FLAGS.samples} digits each, {reference.describe()})")
    print(
        f"real MNIST training digits: FID {real['mnist_fid']:.2f}, MNIST score {real['mnist_score']:.2f} (the floor); "
        f"real test digits lie {real['nearest_training_distance']:.2f} from their nearest training digit"
    )
    for name, rows in rows_by_run.items():
        if name == "real_mnist":
            continue
        last = rows[-1]
        level = (
            "level with real digits"
            if last["mnist_fid"] <= real["mnist_fid"]
            else f"{last['mnist_fid'] / real['mnist_fid']:.1f}x real digits' FID"
        )
        print(
            f"{name}: after {last['epoch']} epochs, {last['training_seconds'] / 60:.1f} min: "
            f"FID {last['mnist_fid']:.2f} ({level}), MNIST score {last['mnist_score']:.2f}, "
            f"class shares {last['min_class_share']:.1%}..{last['max_class_share']:.1%}, "
            f"{last['nearest_training_distance']:.2f} from the nearest training digit"
            + (f", {last['accuracy_vs_intended']:.1%} classified as intended" if name == "project_conditional" else "")
        )
    if "tutorial" in rows_by_run and "project" in rows_by_run:
        target = rows_by_run["tutorial"][-1]
        reached = time_to_reach(rows_by_run["project"], target["mnist_fid"])
        print(
            f"tutorial's FID after {target['epoch']} epochs: {target['mnist_fid']:.2f} in "
            f"{target['training_seconds']:.0f} s"
        )
        if reached is None:
            print("the project never reached it")
        else:
            print(
                f"the project reached it after {reached:.0f} s: {reached / target['training_seconds']:.3f}x the "
                "tutorial's time (target: <= 0.25x)"
            )


def _save(rows_by_run):
    write_csv(
        os.path.join(FLAGS.output_dir, "time_to_quality.csv"), [row for rows in rows_by_run.values() for row in rows]
    )
    curves = {
        name: ([r["training_seconds"] / 60 for r in rows], [r["mnist_fid"] for r in rows])
        for name, rows in rows_by_run.items()
        if name != "real_mnist"
    }
    longest = max([minutes[-1] for minutes, _ in curves.values() if minutes] or [1.0])
    real_fid = rows_by_run["real_mnist"][0]["mnist_fid"]
    curves["real MNIST (floor, same count)"] = ([0.0, longest], [real_fid, real_fid])
    plots.save_curves(
        os.path.join(FLAGS.output_dir, "time_to_quality.png"),
        None,
        curves,
        "training minutes (set-up included)",
        "MNIST-FID (reference judge, log scale)",
        "GAN time to quality: lower is better",
        log_y=True,
    )


if __name__ == "__main__":
    app.run(main)
