"""GAN training with MultiWorkerMirroredStrategy over two local processes on loopback.

Each process is started as a user would start a worker on its own machine: the same
command, `--strategy=multi_worker`, and its own `TF_CONFIG`. The chief (worker 0) writes
the outputs; worker 1 writes nothing.
"""

import subprocess

import numpy as np
import pytest

from gan.callbacks import read_history
from gan.sampling import load_generator, sample_digits
from genlab.distribute import local_tf_configs

from helpers.programs import program_env, start_program


def start_workers(args, output_dirs):
    workers = []
    for tf_config, output_dir in zip(local_tf_configs(len(output_dirs)), output_dirs):
        workers.append(
            start_program(
                "scripts.train_gan",
                ["--strategy=multi_worker", f"--output_dir={output_dir}", *args],
                env=program_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return workers


@pytest.mark.slow
def test_two_workers_train_one_gan_and_only_the_chief_writes(tiny_mnist, tmp_path):
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    workers = start_workers(
        ["--epochs=2", "--batch_size=32", "--noise_dim=16", f"--mnist_path={tiny_mnist}"], [chief_dir, worker_dir]
    )
    try:
        results = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-3000:]

    assert (chief_dir / "generator.keras").is_file() and (chief_dir / "samples.gif").is_file()
    assert not worker_dir.exists()  # Worker 1 wrote nothing, not even its folder.
    assert "the chief wrote the outputs" in results[1][0]
    history = read_history(str(chief_dir / "history.csv"))
    # The global batch of 32 is split over the two workers: 512 images = 16 steps per epoch.
    assert [int(row["epoch"]) for row in history] == [1, 2]
    images, _ = sample_digits(load_generator(str(chief_dir / "generator.keras")), 8)
    assert images.shape == (8, 28, 28, 1) and np.abs(images).max() <= 1
    assert images.std(axis=0).mean() > 0.01  # A working generator: different noise, different digits.
