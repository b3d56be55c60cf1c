"""GAN time to quality: MNIST-FID against training seconds, this project vs TensorFlow's DCGAN tutorial.

Both train on real MNIST on this machine in the same run. After every epoch the generator
draws `--samples` digits (fixed noise) that a LeNet-5 judges: MNIST-FID against the 10,000
test digits, the MNIST score (Inception Score with LeNet), the class shares, and in
conditional mode the share classified as the intended digit; the FID and score of the
generator's latest weights too (the project samples from their moving average). The clock counts training
only: each epoch's time in `fit`, with the project's own per-epoch callbacks (sample grid,
history, checkpoint) in it and the evaluation left out.

The peer is the tutorial (tensorflow.org/tutorials/generative/dcgan) as written: its
networks (`--architecture=tf_tutorial`: Dense 7x7x256, 5x5 transposed convolutions 128, 64,
1; discriminator 5x5 convolutions 64, 128 with dropout 0.3), noise 100, batch 256, Adam
1e-4 with Keras's default betas, and its train step, which feeds one generator pass to both
networks' tapes. The project runs `gan.train.train` with its default `TrainConfig`
(unconditional, conditioned on clusters), with `conditional=True`, and with `clusters=0`.

Prints the tutorial's FID after its last epoch, when the project first reached that FID,
the ratio of the two training times, and both runs' last figures; writes
`time_to_quality.csv` and `time_to_quality.png` (FID against training minutes) to
`--output_dir`.

  python benchmarks/gan_time_to_quality.py --output_dir=runs/time_to_quality
  python benchmarks/gan_time_to_quality.py --runs=project_conditional   # conditional mode only
  python benchmarks/gan_time_to_quality.py --runs=project,project_no_clusters   # what clusters are worth
"""

import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from gan.model import NUM_CLASSES, build_networks, cluster_sampler
from gan.train import TrainConfig, mnist_for_gan, train
from genlab import plots
from genlab.files import write_csv
from genlab.mnist import ENV_VAR, load_mnist
from lenet.metrics import quality_report
from lenet.model import probabilities_and_features
from lenet.train import LeNetConfig, load_classifier
from lenet.train import train as train_lenet

RUNS = ("project", "tutorial", "project_conditional", "project_no_clusters")
PROJECT_RUNS = {"project": {}, "project_conditional": dict(conditional=True), "project_no_clusters": dict(clusters=0)}
flags.DEFINE_list("runs", ["project", "tutorial"], f"Which runs, in order, from {', '.join(RUNS)}.")
flags.DEFINE_integer("tutorial_epochs", 10, "Epochs for the tutorial's configuration (its own default is 50).", lower_bound=1)
flags.DEFINE_integer("project_epochs", 0, "Epochs for the project's runs (0: TrainConfig's default).", lower_bound=0)
flags.DEFINE_integer("samples", 5000, "Generated digits per evaluation.", lower_bound=100)
flags.DEFINE_string("classifier", "", "A LeNet-5 saved by genlab-train-lenet (empty: train one first, untimed).")
flags.DEFINE_string("output_dir", "runs/time_to_quality", "Where the CSV, the plot and the runs' outputs go.")
FLAGS = flags.FLAGS

TUTORIAL = dict(architecture="tf_tutorial", noise_dim=100, batch_size=256, learning_rate=1e-4)


class TutorialDCGAN(keras.Model):
    """The tutorial's `train_step`: one forward pass, two tapes, both networks updated."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = generator.inputs[0].shape[-1]
        self.built = True

    def compile(self, learning_rate):
        super().compile()
        self.g_optimizer = keras.optimizers.Adam(learning_rate)
        self.d_optimizer = keras.optimizers.Adam(learning_rate)

    def generate(self, noise, labels=None):
        return self.generator(noise, training=False)

    def train_step(self, data):
        images, _ = data
        noise = tf.random.normal([tf.shape(images)[0], self.noise_dim])
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            generated = self.generator(noise, training=True)
            real_output = self.discriminator(images, training=True)
            fake_output = self.discriminator(generated, training=True)
            g_loss = bce(tf.ones_like(fake_output), fake_output)
            d_loss = bce(tf.ones_like(real_output), real_output) + bce(tf.zeros_like(fake_output), fake_output)
        g_grads = g_tape.gradient(g_loss, self.generator.trainable_variables)
        d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return {"g_loss": g_loss, "d_loss": d_loss}


class QualityClock(keras.callbacks.Callback):
    """Adds up each epoch's training time, then judges the generator's digits (untimed)."""

    def __init__(self, name, judge, test_features, noise, labels, rows):
        super().__init__()
        self.name, self.judge, self.test_features = name, judge, test_features
        self.noise, self.labels, self.rows = noise, labels, rows
        self.training_seconds = 0.0

    def on_train_begin(self, logs=None):
        # The project samples from its averaged generator; its latest weights, judged on the
        # same noise, show what the averaging is worth on the very same training run.
        shares = getattr(self.model, "cluster_shares", None)
        self.latest = self.model.generator if shares is None else cluster_sampler(self.model.generator, shares)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.training_seconds += time.perf_counter() - self._start
        report = self._judge(self.model.generate)
        shares = report["class_distribution"]
        latest = self._judge(lambda noise, labels: self.latest(noise if labels is None else [noise, labels], training=False))
        row = {"run": self.name, "epoch": epoch + 1, "training_seconds": round(self.training_seconds, 1),
               "mnist_fid": round(report["mnist_fid"], 3), "mnist_score": round(report["mnist_score"], 3),
               "class_entropy_bits": round(report["class_entropy_bits"], 3),
               "min_class_share": round(min(shares), 4), "max_class_share": round(max(shares), 4),
               "accuracy_vs_intended": round(report.get("accuracy_vs_intended", float("nan")), 4),
               "latest_weights_fid": round(latest["mnist_fid"], 3), "latest_weights_score": round(latest["mnist_score"], 3)}
        self.rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    def _judge(self, generate):
        images = np.concatenate([
            generate(self.noise[i:i + 500], None if self.labels is None else self.labels[i:i + 500]).numpy()
            for i in range(0, len(self.noise), 500)
        ])
        probabilities, features = self.judge.predict(plots.to_uint8(images).astype("float32"), batch_size=1000, verbose=0)
        return quality_report(probabilities, features, self.test_features, self.labels)


def run_tutorial(clock, mnist_path):
    keras.utils.set_random_seed(0)
    images, labels = mnist_for_gan(TrainConfig(mnist_path=mnist_path))
    generator, discriminator = build_networks(TUTORIAL["architecture"], TUTORIAL["noise_dim"])
    model = TutorialDCGAN(generator, discriminator)
    model.compile(TUTORIAL["learning_rate"])
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


def main(argv):
    del argv
    unknown = set(FLAGS.runs) - set(RUNS)
    if unknown:
        raise app.UsageError(f"--runs: unknown {', '.join(sorted(unknown))}; choose from {', '.join(RUNS)}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    mnist_path = os.environ.get(ENV_VAR, "")
    classifier = FLAGS.classifier
    if not classifier:
        classifier = os.path.join(tempfile.mkdtemp(), "lenet.keras")
        print("Training the judge (LeNet-5, default flags; not timed)...", flush=True)
        train_lenet(LeNetConfig(mnist_path=mnist_path), classifier, verbose=0)
    judge = probabilities_and_features(load_classifier(classifier))
    _, (x_test, _) = load_mnist(mnist_path or None)
    _, test_features = judge.predict(x_test[..., None].astype("float32"), batch_size=1000, verbose=0)

    rows_by_run = {}
    for name in FLAGS.runs:
        print(f"== {name}", flush=True)
        rows = rows_by_run[name] = []
        conditional = name == "project_conditional"
        noise_dim = TUTORIAL["noise_dim"] if name == "tutorial" else TrainConfig.noise_dim
        noise = np.random.default_rng(1).standard_normal((FLAGS.samples, noise_dim)).astype("float32")
        labels = (np.arange(FLAGS.samples) % NUM_CLASSES).astype("int32") if conditional else None
        clock = QualityClock(name, judge, test_features, noise, labels, rows)
        if name == "tutorial":
            run_tutorial(clock, mnist_path)
        else:
            run_project(clock, mnist_path, os.path.join(FLAGS.output_dir, name), PROJECT_RUNS[name])
        _save(rows_by_run)  # After each run, so a long benchmark stopped early keeps what it measured.

    print("\n== summary")
    for name, rows in rows_by_run.items():
        last = rows[-1]
        print(f"{name}: after {last['epoch']} epochs, {last['training_seconds'] / 60:.1f} min of training: "
              f"FID {last['mnist_fid']:.2f}, MNIST score {last['mnist_score']:.2f}, "
              f"class shares {last['min_class_share']:.1%}..{last['max_class_share']:.1%}"
              + (f", {last['accuracy_vs_intended']:.1%} classified as intended" if name == "project_conditional" else ""))
    if "tutorial" in rows_by_run and "project" in rows_by_run:
        target = rows_by_run["tutorial"][-1]
        reached = time_to_reach(rows_by_run["project"], target["mnist_fid"])
        print(f"tutorial's FID after {target['epoch']} epochs: {target['mnist_fid']:.2f} in {target['training_seconds']:.0f} s")
        if reached is None:
            print("the project never reached it")
        else:
            print(f"the project reached it after {reached:.0f} s: {reached / target['training_seconds']:.3f}x the "
                  "tutorial's time (target: <= 0.25x)")


def _save(rows_by_run):
    write_csv(os.path.join(FLAGS.output_dir, "time_to_quality.csv"), [row for rows in rows_by_run.values() for row in rows])
    curves = {name: ([r["training_seconds"] / 60 for r in rows], [r["mnist_fid"] for r in rows])
              for name, rows in rows_by_run.items()}
    plots.save_curves(os.path.join(FLAGS.output_dir, "time_to_quality.png"), None, curves,
                      "training minutes (2 CPU cores)", "MNIST-FID (LeNet features, log scale)",
                      "GAN time to quality: lower is better", log_y=True)


if __name__ == "__main__":
    app.run(main)
