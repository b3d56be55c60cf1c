"""Fine-tuning's random draws (xray.training.plan): min-SNR weights as diffusers computes them,
offset noise and augmentation, each a function of the seed and the batch's number."""

import numpy as np

from xray.config import FinetuneConfig
from xray.sd.sampler import NoiseSchedule
from xray.training.augment import Augmentation
from xray.training.plan import PROBE_FIRST, UpdatePlan, min_snr_weights

from helpers.checks import import_peer

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def test_min_snr_weights_equal_diffusers_for_the_same_timesteps():
    torch, diffusers = import_peer("torch"), import_peer("diffusers")
    from diffusers.training_utils import compute_snr

    scheduler = diffusers.DDPMScheduler(**SD_SCHEDULE)
    schedule = NoiseSchedule.from_diffusers_config(dict(scheduler.config), "DDPMScheduler")
    timesteps = torch.tensor([0, 1, 50, 100, 150, 200, 500, 999])
    for gamma in (1.0, 5.0):
        # train_text_to_image_lora.py's weights for epsilon prediction.
        snr = compute_snr(scheduler, timesteps)
        expected = torch.stack([snr, gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
        got = min_snr_weights(schedule.alphas_cumprod, timesteps.numpy(), gamma)
        np.testing.assert_allclose(got, expected.numpy(), rtol=2e-4)  # diffusers' 1 - alpha-bar in float32.
    assert got[0] < 0.01 and got[-1] == 1.0  # Nearly clean latents count little, noisy ones fully.
    np.testing.assert_array_equal(min_snr_weights(schedule.alphas_cumprod, timesteps.numpy(), 0), 1.0)


def plan(**settings):
    config = FinetuneConfig(image_size=128, batch_size=256, seed=3, **settings)
    latents = np.zeros((4, 16, 16, 4), np.float32)
    return UpdatePlan(latents, np.zeros(4, int), ["a", ""], NoiseSchedule.keras_cv(), config, np.zeros((2, 77, 8)))


def test_offset_noise_adds_a_constant_per_image_and_channel_to_the_same_noise():
    plain, offset = plan(noise_offset=0).batch(7), plan(noise_offset=0.1).batch(7)
    shift = offset["noise"] - plain["noise"]  # The draws before the offset are those of a run without it.
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1, :], shift.shape), atol=1e-6)
    assert 0.09 < shift[:, 0, 0, :].std() < 0.11 and abs(shift[:, 0, 0, :].mean()) < 0.02  # 1024 draws of N(0, 0.1²).
    # Whole images and channels now move: a latent's channel mean spreads by 0.1, not by 1/16 alone.
    assert plain["noise"].mean(axis=(1, 2)).std() < 0.07 < 0.1 < offset["noise"].mean(axis=(1, 2)).std()
    for key, value in plan(noise_offset=0.1).batch(7).items():  # A resumed run draws the same batch.
        np.testing.assert_array_equal(value, offset[key])
    assert not np.array_equal(plan(noise_offset=0.1).batch(8)["noise"], offset["noise"])


def test_each_row_carries_its_timesteps_min_snr_weight():
    batch = plan(snr_gamma=5.0).batch(0)
    alphas = batch["signal"].astype(np.float64) ** 2
    snr = alphas / (1 - alphas)
    np.testing.assert_allclose(batch["loss_weight"], np.minimum(snr, 5.0) / snr, rtol=1e-3)  # signal is float32.
    assert 0 < batch["loss_weight"].min() < 1 == batch["loss_weight"].max()
    assert (plan(snr_gamma=0).batch(0)["loss_weight"] == 1).all()


def test_training_images_are_augmented_by_batch_number_and_probe_images_are_not():
    images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    config = FinetuneConfig(image_size=256, batch_size=2, seed=3)

    def image_plan(augmentation=None):
        schedule = NoiseSchedule.keras_cv()
        return UpdatePlan(
            images, np.zeros(4, int), ["a", ""], schedule, config, np.zeros((2, 77, 8)), None, augmentation
        )

    rotated = Augmentation(rotation=10)
    plain, augmented = image_plan().batch(3), image_plan(rotated).batch(3)
    assert np.abs(augmented["x"] - plain["x"]).max() > 0.1  # The same images, turned.
    assert all(np.array_equal(augmented[k], plain[k]) for k in plain if k != "x")  # The other draws unchanged.
    np.testing.assert_array_equal(image_plan(rotated).batch(3)["x"], augmented["x"])  # Resumed: the same turns.
    np.testing.assert_array_equal(image_plan(rotated).batch(PROBE_FIRST)["x"], image_plan().batch(PROBE_FIRST)["x"])
