"""One short run of each MNIST program, as a user types it: exit status 0 and no traceback.

The `programs` tests are for the compatibility stage (`make test-colab`, Colab's TensorFlow and
Keras), where a dependency that misbehaves shows up as a traceback on a run that otherwise works.
On the project's own pair the slow tests in tests/scripts/ cover each program in depth, so
`make test` leaves these out.
"""

import pytest

from helpers.programs import run_cleanly

pytestmark = [pytest.mark.slow, pytest.mark.programs]


def test_the_lab(tmp_path, tiny_mnist):
    run_cleanly(
        "scripts.mnist_lab",
        f"--output_dir={tmp_path}",
        f"--mnist_path={tiny_mnist}",
        "--gan_epochs=1",
        "--gan_batch_size=32",
        "--lenet_epochs=1",
        "--count=20",
    )
    assert (tmp_path / "sorted" / "summary.json").is_file()


def test_gan_lenet_and_sorting(tmp_path, tiny_mnist):
    gan, lenet, out = tmp_path / "gan", tmp_path / "lenet" / "lenet.keras", tmp_path / "sorted"
    run_cleanly(
        "scripts.train_gan", f"--output_dir={gan}", f"--mnist_path={tiny_mnist}", "--epochs=1", "--batch_size=32"
    )
    run_cleanly("scripts.train_lenet", f"--model_path={lenet}", f"--mnist_path={tiny_mnist}", "--epochs=1")
    run_cleanly(
        "scripts.sort_digits",
        f"--generator={gan / 'generator.keras'}",
        f"--classifier={lenet}",
        f"--output_dir={out}",
        "--count=20",
        "--min_confidence=0",
    )
    assert len(list(out.glob("*/*.png"))) == 20  # Every digit in a folder.
