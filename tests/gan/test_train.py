"""The GAN training library: learning, determinism, divergence handling, resume checks."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from gan.callbacks import latest_checkpoint, read_history
from gan.clusters import MIN_CLUSTER_SIZE
from gan.config import TrainConfig
from gan.model import build_networks
from gan.sampling import load_generator, sample_digits
from gan.train import conditioning, fixed_noise, mnist_for_gan, train
from genlab.errors import UserError


def tiny_config(mnist_path, **overrides):
    fields = dict(epochs=1, batch_size=32, noise_dim=16, num_train_images=256, mnist_path=mnist_path, seed=3)
    fields.update(overrides)
    return TrainConfig(**fields)


def background_fraction(images):
    return float((images < -0.5).mean())


@pytest.mark.slow
def test_a_few_epochs_on_real_digits_learn_their_look(mnist_path, tmp_path):
    # An untrained generator's tanh outputs sit near 0 (grey); MNIST is ~80% black (-1)
    # background. After a few epochs on 2,000 real digits, fakes must have learned that.
    # No clusters: 2,000 digits make 20 per cluster, which the discriminator learns by heart.
    config = tiny_config(
        mnist_path,
        epochs=4,
        num_train_images=2000,
        batch_size=64,
        d_learning_rate=5e-4,
        g_learning_rate=5e-4,
        clusters=0,
    )
    untrained, _ = sample_digits(build_networks("default", 16)[0], 500)
    result = train(config, str(tmp_path), verbose=0)
    trained, _ = sample_digits(result.generator, 500)
    assert background_fraction(untrained) < 0.2
    assert background_fraction(trained) > 0.5
    history = result.history
    assert [int(row["epoch"]) for row in history] == [1, 2, 3, 4]
    # The discriminator no longer wins as easily as in its first epoch.
    assert float(history[-1]["g_loss"]) > float(history[0]["g_loss"]) or float(history[-1]["d_fake"]) > float(
        history[0]["d_fake"]
    )


@pytest.mark.slow
def test_same_seed_same_fixed_noise_grid(mnist_path, tmp_path):
    config = tiny_config(mnist_path)
    first = train(config, str(tmp_path / "a"), verbose=0)
    second = train(config, str(tmp_path / "b"), verbose=0)
    noise, _ = fixed_noise(config)
    np.testing.assert_array_equal(first.generator.predict(noise, verbose=0), second.generator.predict(noise, verbose=0))
    with (
        open(tmp_path / "a" / "samples" / "epoch_0001.png", "rb") as a,
        open(tmp_path / "b" / "samples" / "epoch_0001.png", "rb") as b,
    ):
        assert a.read() == b.read()
    other = train(dataclasses.replace(config, seed=4), str(tmp_path / "c"), verbose=0)
    assert not np.array_equal(first.generator.predict(noise, verbose=0), other.generator.predict(noise, verbose=0))


class PoisonGenerator(keras.callbacks.Callback):
    """Sets a generator weight to NaN when epoch `at_epoch` (1-based) begins."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch:
            weight = self.model.generator.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, dtype="float32"))


@pytest.mark.slow
def test_nan_stops_training_and_keeps_last_good_checkpoint(mnist_path, tmp_path):
    config = tiny_config(mnist_path, epochs=3)
    with pytest.raises(UserError, match="diverged.*epoch 2.*epoch_0001.weights.h5.*resume"):
        train(config, str(tmp_path), verbose=0, extra_callbacks=[PoisonGenerator(at_epoch=2)])
    epochs_done, path = latest_checkpoint(str(tmp_path / "checkpoints"))
    assert epochs_done == 1 and path.endswith("epoch_0001.weights.h5")
    assert not os.path.exists(tmp_path / "generator.keras")
    # Run again: resumes from the good epoch and finishes.
    result = train(config, str(tmp_path), verbose=0)
    assert [int(row["epoch"]) for row in read_history(str(tmp_path / "history.csv"))] == [1, 2, 3]
    assert np.isfinite(sample_digits(result.generator, 4)[0]).all()


@pytest.mark.slow
def test_resume_refuses_a_different_model(mnist_path, tmp_path):
    train(tiny_config(mnist_path), str(tmp_path), verbose=0)
    with pytest.raises(UserError, match="noise_dim=16, not 32.*new --output_dir"):
        train(tiny_config(mnist_path, noise_dim=32), str(tmp_path), verbose=0)


@pytest.mark.slow
def test_more_epochs_continue_a_finished_run(mnist_path, tmp_path):
    train(tiny_config(mnist_path, epochs=1), str(tmp_path), verbose=0)
    train(tiny_config(mnist_path, epochs=2), str(tmp_path), verbose=0)
    assert [int(row["epoch"]) for row in read_history(str(tmp_path / "history.csv"))] == [1, 2]


@pytest.mark.slow
def test_conditional_sampling_api(mnist_path, tmp_path):
    train(tiny_config(mnist_path, conditional=True), str(tmp_path), verbose=0)
    generator = load_generator(str(tmp_path / "generator.keras"))
    images, labels = sample_digits(generator, 25, seed=1)
    assert images.shape == (25, 28, 28, 1) and (np.abs(images) <= 1).all()
    assert labels.tolist() == [i % 10 for i in range(25)]
    # The labels asked for reach the generator: the same noise draws other images for another digit.
    sevens, _ = sample_digits(generator, 8, seed=1, labels=[7] * 8)
    threes, _ = sample_digits(generator, 8, seed=1, labels=[3] * 8)
    np.testing.assert_allclose(sevens[7], images[7], atol=1e-5)  # Noise row 7 with label 7, as in the first call.
    assert np.abs(sevens - threes).max() > 1e-3  # Far beyond round-off: the label changed the image.


@pytest.mark.slow
def test_unconditional_training_reads_no_labels(mnist_path, tmp_path, monkeypatch):
    # Clusters of the images stand in for labels: scrambling MNIST's labels changes nothing.
    import gan.train

    config = tiny_config(mnist_path, clusters=8)
    first = train(config, str(tmp_path / "a"), verbose=0)
    real_load = gan.train.load_mnist

    def scrambled_labels(path):
        (x, y), test = real_load(path)
        return (x, np.random.default_rng(0).permutation(y)), test

    monkeypatch.setattr(gan.train, "load_mnist", scrambled_labels)
    second = train(config, str(tmp_path / "b"), verbose=0)
    noise, _ = fixed_noise(config)
    assert len(second.generator.inputs) == 1  # Saved as a noise -> image model.
    np.testing.assert_array_equal(first.generator.predict(noise, verbose=0), second.generator.predict(noise, verbose=0))


def test_a_small_training_set_gets_fewer_clusters(mnist_path):
    config = tiny_config(mnist_path, clusters=300)
    images, labels = mnist_for_gan(config)
    clusters, count, shares = conditioning(config, images, labels)
    assert count == 256 // MIN_CLUSTER_SIZE and len(shares) == count and set(clusters) == set(range(count))


def test_load_generator_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_generator(str(tmp_path / "none.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    with pytest.raises(UserError, match="not a loadable Keras model"):
        load_generator(str(bad))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(str(tmp_path / "other.keras"))
    with pytest.raises(UserError, match="not a GAN generator"):
        load_generator(str(tmp_path / "other.keras"))


@pytest.mark.slow
def test_trains_under_a_mirrored_strategy(mnist_path, tmp_path):
    result = train(tiny_config(mnist_path, strategy="mirrored"), str(tmp_path), verbose=0)
    assert (tmp_path / "generator.keras").is_file()
    assert np.isfinite([float(v) for k, v in result.history[0].items() if k != "epoch"]).all()


def test_only_the_chief_writes(monkeypatch):
    from genlab.distribute import is_chief

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": dict(cluster, chief=["localhost:3"]), "task": {"type": "worker", "index": 0}}),
    )
    assert not is_chief()


def test_multi_worker_without_tf_config_is_a_clear_error(mnist_path, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="multi_worker needs the TF_CONFIG"):
        train(tiny_config(mnist_path, strategy="multi_worker"), str(tmp_path), verbose=0)


def test_auto_strategy_follows_the_runtime(monkeypatch, capsys):
    from genlab import distribute, runtime

    def detected(device_files, gpus, tpu_name=None):
        monkeypatch.setattr(
            runtime.glob, "glob", lambda pattern: [p for p in device_files if p.startswith(pattern[:9])]
        )
        monkeypatch.setattr(distribute.tf.config, "list_physical_devices", lambda kind: gpus if kind == "GPU" else [])
        if tpu_name:
            monkeypatch.setenv("TPU_NAME", tpu_name)
        else:
            monkeypatch.delenv("TPU_NAME", raising=False)
        return distribute.detect_runtime()

    assert detected([], []) == "cpu"
    assert detected([], ["GPU:0"]) == "gpu"
    assert detected(["/dev/accel0"], []) == "tpu"  # TPU v2-v4 VMs.
    assert detected(["/dev/vfio/0"], ["GPU:0"]) == "tpu"  # v5e and later; a TPU wins over anything else.
    assert detected([], [], tpu_name="my-tpu") == "tpu"
    detected([], [])
    assert distribute.make_strategy("auto").num_replicas_in_sync == 1

    # A TPU runtime whose TensorFlow cannot reach the TPU (Colab's, when the TPU build is missing):
    # auto trains on the host's CPUs and says so, where --strategy=tpu stops with one line.
    detected(["/dev/vfio/0"], [])

    def no_tpu(**kwargs):
        raise ValueError("no TPU found")

    monkeypatch.setattr(distribute.tf.distribute.cluster_resolver, "TPUClusterResolver", no_tpu)
    assert distribute.make_strategy("auto").num_replicas_in_sync == 1
    assert "training on this machine's CPUs instead" in capsys.readouterr().err
    with pytest.raises(UserError, match="--strategy=tpu found no TPU"):
        distribute.make_strategy("tpu")
