"""Fine-tuning's resume points: what a checkpoint holds, which ones are kept, and restoring one."""

import keras
import numpy as np
import pytest

from genlab.errors import UserError
from xray.training.checkpoints import latest_checkpoint, restore_checkpoint, save_checkpoint, step_files


def trained_model(units=3, steps=2):
    """A small model after `steps` Adam updates, so the optimizer has state worth restoring."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x = np.arange(16, dtype="float32").reshape(4, 4) / 16
    model.fit(x, np.ones((4, units), "float32"), epochs=steps, verbose=0)
    return model


@pytest.mark.parametrize("keep, kept", [(1, [30]), (2, [20, 30]), (5, [10, 20, 30])])
def test_only_the_newest_resume_points_are_kept(tmp_path, keep, kept):
    model = trained_model()
    for steps in (10, 20, 30):
        save_checkpoint(str(tmp_path), model, steps, keep)
    assert [step for step, _ in step_files(str(tmp_path), "npz")] == kept
    assert latest_checkpoint(str(tmp_path))[0] == 30


def test_a_resume_point_restores_weights_and_optimizer_state(tmp_path):
    saved = trained_model()
    save_checkpoint(str(tmp_path), saved, 7)
    fresh = trained_model(steps=1)  # Other weights, and an optimizer one update behind.
    assert restore_checkpoint(latest_checkpoint(str(tmp_path))[1], fresh) == 7
    for restored, original in zip(
        fresh.trainable_variables + fresh.optimizer.variables, saved.trainable_variables + saved.optimizer.variables
    ):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original))


def test_a_resume_point_of_other_weights_is_refused(tmp_path):
    save_checkpoint(str(tmp_path), trained_model(), 7)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    other.compile(optimizer="adam", loss="mse")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(UserError, match="trained other weights; use a new --output_dir"):
        restore_checkpoint(latest_checkpoint(str(tmp_path))[1], other)


def test_a_resume_point_of_another_optimizer_state_is_refused(tmp_path):
    save_checkpoint(str(tmp_path), trained_model(), 7)
    averaging = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    averaging.compile(optimizer=keras.optimizers.Adam(0.1, use_ema=True), loss="mse")  # --ema_decay added.
    averaging.optimizer.build(averaging.trainable_variables)
    with pytest.raises(UserError, match=r"another optimizer state \(--ema_decay, --gradient_accumulation\)"):
        restore_checkpoint(latest_checkpoint(str(tmp_path))[1], averaging)
