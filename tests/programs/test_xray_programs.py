"""One short run of each X-ray program on Stable Diffusion's networks with random weights (see
test_mnist_programs.py for why these run in the compatibility stage only). One module, so that
one worker runs them one after another: two full-sized networks side by side pass 12 GiB."""

import pytest

from helpers.image_folders import write_medmnist_fixture
from helpers.programs import run_cleanly

pytestmark = [pytest.mark.slow, pytest.mark.programs]
SD_TINY = ["--weights=random", "--image_size=128", "--precision=float32"]


def test_public_set_finetune_vary_judge_and_export(tmp_path, clip_bpe_path):
    source = write_medmnist_fixture(tmp_path / "pneumoniamnist_128.npz", size=128)
    real = tmp_path / "public" / "train"
    run_cleanly(
        "scripts.xray_data",
        "--source=medmnist:pneumoniamnist",
        "--size=128",
        f"--medmnist_path={source}",
        f"--output_dir={real.parent}",
    )
    lora = tmp_path / "lora"
    run_cleanly(
        "scripts.finetune_xrays",
        f"--data_dir={real}",
        f"--output_dir={lora}",
        *SD_TINY,
        f"--tokenizer_path={clip_bpe_path}",
        "--max_steps=2",
        "--checkpoint_every=2",
        "--sample_every=0",
        "--ema_decay=0.9",
        "--random_crop=0.9",
        "--random_rotation=5",
        "--brightness_contrast=0.1",
    )
    assert (lora / "lora_ema.safetensors").is_file()
    synthetic = tmp_path / "synthetic"
    run_cleanly(
        "scripts.generate_xrays",
        f"--output_dir={synthetic}",
        *SD_TINY,
        f"--tokenizer_path={clip_bpe_path}",
        "--steps=2",
        f"--lora={lora / 'lora.safetensors'}",
        f"--init_images={real}",
        "--images_per_class=1",
    )
    assert len(list(synthetic.glob("*/*.png"))) == 2  # A variation of one source a class.
    run_cleanly(
        "scripts.judge_xrays",
        f"--real={real}",
        f"--synthetic={synthetic}",
        f"--output_dir={tmp_path / 'judge'}",
        "--image_size=32",
        "--epochs=1",
    )
    run_cleanly(
        "scripts.export_diffusers",
        f"--output_dir={tmp_path / 'lora_diffusers'}",
        f"--lora={lora / 'lora.safetensors'}",
        "--lora_only",
    )


def test_export_a_checkpoint_with_random_weights_and_convert_it_back(tmp_path, clip_bpe_path):
    checkpoint = tmp_path / "diffusers"
    run_cleanly(
        "scripts.export_diffusers",
        f"--output_dir={checkpoint}",
        "--weights=random",
        f"--tokenizer_path={clip_bpe_path}",
    )
    run_cleanly("scripts.convert_diffusers", f"--checkpoint={checkpoint}", f"--output_dir={tmp_path / 'keras_cv'}")
