"""Reading users' image folders: 8/16-bit grayscale and RGB, PNG and JPEG, any size."""

import numpy as np
import pytest
from PIL import Image

from genlab.errors import UserError
from xray.data.image_folder import class_folders, read_grayscale_images, read_image


def test_16_bit_radiographs_are_stretched_from_their_own_range(tmp_path):
    pixels = np.zeros((40, 40), dtype=np.uint16)
    pixels[:, 20:] = 4095  # 12 bits used, as many detectors do.
    Image.fromarray(pixels).save(tmp_path / "xray16.png")
    image = read_image(tmp_path / "xray16.png", 20)
    assert image.shape == (20, 20, 1)
    assert image[:, :8].max() == pytest.approx(0.0, abs=1e-3) and image[:, 12:].min() == pytest.approx(1.0, abs=1e-3)


def test_rgb_keeps_three_channels_and_grayscale_conversion_uses_luma(tmp_path):
    Image.new("RGB", (30, 30), (255, 0, 0)).save(tmp_path / "red.png")
    assert read_image(tmp_path / "red.png", 10).shape == (10, 10, 3)
    assert read_grayscale_images([tmp_path / "red.png"], 10)[0, 5, 5, 0] == pytest.approx(0.299, abs=1e-3)


def test_non_square_images_are_centre_cropped(tmp_path):
    pixels = np.zeros((20, 60), dtype=np.uint8)
    pixels[:, 20:40] = 255  # Only the centre square is white.
    Image.fromarray(pixels).save(tmp_path / "wide.jpg", quality=95)
    image = read_image(tmp_path / "wide.jpg", 10)
    assert image.shape == (10, 10, 1) and image[2:-2, 2:-2].min() > 0.9


def test_class_names_are_made_safe_and_unreadable_files_are_named(tmp_path):
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "PNEUMONIA" / "a.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    classes = class_folders(str(tmp_path), "--real")
    assert list(classes) == ["pneumonia"]
    with pytest.raises(UserError, match="a.png is not a readable PNG or JPEG"):
        read_image(classes["pneumonia"][0], 8)


def test_an_empty_class_and_a_folder_without_classes_are_refused(tmp_path):
    with pytest.raises(UserError, match="no class sub-folders"):
        class_folders(str(tmp_path), "--real")
    (tmp_path / "normal").mkdir()
    with pytest.raises(UserError, match="normal .--real. holds no PNG or JPEG images"):
        class_folders(str(tmp_path), "--real")
