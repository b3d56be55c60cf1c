"""Augmentation that keeps anatomy (xray.training.augment), on images whose answer is known:
a ramp from black at the left to white at the right."""

import numpy as np

from xray.training.augment import Augmentation, augment

SIZE = 64


def ramps(count):
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    return np.broadcast_to(ramp[None, None, :, None], (count, SIZE, SIZE, 1)).copy()


def centre_slopes(images):
    """Each image's mean step between neighbouring pixels near its centre: (down, right)."""
    centre = images[:, 24:40, 24:40, 0]
    return np.diff(centre, axis=1).mean(axis=(1, 2)), np.diff(centre, axis=2).mean(axis=(1, 2))


def test_no_augmentation_gives_the_images_back():
    images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    assert not Augmentation().on
    np.testing.assert_allclose(augment(images, Augmentation(), np.random.default_rng(1)), images, atol=1e-6)


def test_a_crop_keeps_between_its_scale_and_all_of_the_ramp():
    spans = np.ptp(augment(ramps(200), Augmentation(crop_scale=0.5), np.random.default_rng(2))[:, 32], axis=(1, 2))
    assert 2 * 0.5 - 0.05 < spans.min() < 1.2 and 1.8 < spans.max() < 2 + 1e-6  # The ramp spans 2.


def test_rotations_turn_the_ramp_by_up_to_their_angle():
    down, right = centre_slopes(augment(ramps(200), Augmentation(rotation=10), np.random.default_rng(3)))
    angles = np.degrees(np.arctan2(down, right))
    assert -10.5 < angles.min() < -8 and 8 < angles.max() < 10.5


def test_brightness_and_contrast_move_each_image_by_a_line():
    images = np.random.default_rng(4).uniform(-0.5, 0.5, (50, SIZE, SIZE, 1)).astype(np.float32)
    jittered = augment(images, Augmentation(brightness_contrast=0.2), np.random.default_rng(5))
    for before, after in zip(images, jittered):
        slope, intercept = np.polyfit(before.ravel(), after.ravel(), 1)
        np.testing.assert_allclose(after, slope * before + intercept, atol=1e-5)  # Nothing clipped here.
        assert 0.8 - 1e-5 <= slope <= 1.2 + 1e-5
    assert np.ptp([np.polyfit(b.ravel(), a.ravel(), 1)[0] for b, a in zip(images, jittered)]) > 0.2


def test_flips_only_when_asked_and_then_about_half():
    _, right = centre_slopes(augment(ramps(200), Augmentation(0.8, 5, 0.1), np.random.default_rng(6)))
    assert (right > 0).all()  # Black stays on the left without random_flip.
    _, right = centre_slopes(augment(ramps(200), Augmentation(flip=True), np.random.default_rng(6)))
    assert (right != 0).all() and 70 < (right < 0).sum() < 130


def test_the_same_generator_state_augments_the_same_way():
    settings = Augmentation(crop_scale=0.8, rotation=5, brightness_contrast=0.1, flip=True)
    first, again = (augment(ramps(4), settings, np.random.default_rng([0, 2, 9])) for _ in range(2))
    np.testing.assert_array_equal(first, again)
