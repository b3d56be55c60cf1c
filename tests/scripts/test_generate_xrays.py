"""The genlab-xray program: bad input gets one line and leaves nothing behind, and its CPU kernels
make the images TensorFlow's own make. The program end to end, with LoRA adapters and the judge,
is in scripts/test_finetune_xrays.py."""

import numpy as np
import pytest
from PIL import Image

from genlab.files import read_csv
from genlab.runtime import INFERENCE_ONLY_ENVIRONMENT

from helpers.image_folders import make_shapes_folder, shape_image
from helpers.programs import program_env, run_program


def run_script(args, **kwargs):
    return run_program("scripts.generate_xrays", args, **kwargs)


TENSORFLOW = pytest.mark.slow  # Fails once TensorFlow has loaded: seconds, not a moment.


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(
            ["--weights=local", "--weights_path=/nonexistent"],
            "--weights=local needs --weights_path=DIR",
            marks=TENSORFLOW,
        ),
        (["--prompt_file=/nonexistent.yaml"], "--prompt_file"),
        pytest.param(["--image_size=200"], "--image_size=200 is not a positive multiple of 128", marks=TENSORFLOW),
        (["--num_shards=2", "--shard_index=2"], "--shard_index=2 must be in [0, --num_shards=2)"),
        (["--merge", "--output_dir=/nonexistent"], "point --merge at the shards' dataset folder"),
        (["--real=/nonexistent"], "--real=/nonexistent is not a folder"),
        pytest.param(
            ["--weights=random", "--lora=/nonexistent.safetensors"],
            "--lora=/nonexistent.safetensors: no such file",
            marks=TENSORFLOW,
        ),
        pytest.param(["--weights=random", "--negative_prompt=" + "very " * 80], "shorten it", marks=TENSORFLOW),
        (["--steps=0"], "--steps must be greater than 0"),
        (["--init_images=/nonexistent"], "--init_images=/nonexistent is not a folder"),
        (["--strength=0"], "--strength must be in (0, 1]"),
        (["--caption_template=X-ray", "--init_images=."], "--caption_template='X-ray' needs {class_name} once"),
    ],
)
def test_bad_input_gets_one_line_and_exit_status(tmp_path, clip_bpe_path, args, message):
    make_shapes_folder(tmp_path, 1, classes=("knee",))  # What --init_images=. finds.
    result = run_script([*args, f"--tokenizer_path={clip_bpe_path}"], cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strength=0.01"], "--strength=0.01 with --steps=25 runs no denoising step"),
        (["--masks=masks"], "--masks=masks lacks knee/knee_000.png, the mask of that image"),
        (["--prompt_file=prompts.yaml"], "--init_images class 'knee' has no entry in the prompt file"),
    ],
)
def test_bad_variation_input_gets_one_line_and_leaves_nothing(tmp_path, args, message):
    make_shapes_folder(tmp_path / "real", 1, classes=("knee",))
    (tmp_path / "masks").mkdir()
    (tmp_path / "prompts.yaml").write_text("- class: chest\n  prompt: chest X-ray\n")
    result = run_script(["--init_images=real", "--output_dir=out", *args], cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_images_equal_those_of_tensorflows_own_kernels_within_one_grey_level(tmp_path, clip_bpe_path):
    """By default genlab-xray runs oneDNN's kernels, each keeping its reordered weights from its
    first call (genlab.runtime); with --nocpu_weight_cache, TensorFlow's own choice, which keeps
    nothing. Both in programs, so this process builds no network of its own beside the suite's.
    The same random networks (--seed builds them) vary three real images, the upper half of each
    under a mask (text-to-image runs in scripts/test_finetune_xrays.py), in batches of two: the
    short last batch is filled up to two."""
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- class: lung\n  prompt: chest X-ray\n- class: knee\n  prompt: knee X-ray\n")
    real = make_shapes_folder(tmp_path / "real", 1, classes=("lung", "knee"), size=160)
    Image.fromarray(shape_image("circle", np.random.default_rng(1), 160)).save(tmp_path / "real" / "lung" / "b.png")
    masks = tmp_path / "masks"
    for path in sorted((tmp_path / "real").glob("*/*.png")):
        (masks / path.parent.name).mkdir(parents=True, exist_ok=True)
        mask = np.zeros((160, 160), dtype=np.uint8)
        mask[:80] = 255
        Image.fromarray(mask).save(masks / path.parent.name / path.name)
    args = [
        "--weights=random",
        "--precision=float32",
        "--image_size=128",
        "--steps=3",
        "--batch_size=2",
        f"--prompt_file={prompts}",
        f"--tokenizer_path={clip_bpe_path}",
        f"--init_images={real}",
        "--strength=0.7",
        f"--masks={masks}",
    ]
    env = dict(
        {name: value for name, value in program_env().items() if name not in INFERENCE_ONLY_ENVIRONMENT},
        ONEDNN_VERBOSE="1",
    )
    cached = run_script([*args, f"--output_dir={tmp_path / 'cached'}"], env=env)
    own = run_script([*args, f"--output_dir={tmp_path / 'own'}", "--nocpu_weight_cache"], env=env)
    assert cached.returncode == own.returncode == 0, (cached.stderr[-2000:], own.stderr[-2000:])
    assert ",convolution," in cached.stdout  # oneDNN's convolutions ran.
    files = sorted(p.relative_to(tmp_path / "own") for p in (tmp_path / "own").glob("*/*.png"))
    assert len(files) == 3
    for name in files:
        a, b = (np.asarray(Image.open(tmp_path / run / name), dtype=int) for run in ("cached", "own"))
        assert a.std() > 10 and np.abs(a - b).max() <= 1, name
    rows = read_csv(tmp_path / "own" / "metadata.csv")
    assert [(row["source"], row["mask"], row["strength"]) for row in rows] == [
        ("knee/knee_000.png", "knee/knee_000.png", "0.7"),
        ("lung/b.png", "lung/b.png", "0.7"),
        ("lung/lung_000.png", "lung/lung_000.png", "0.7"),
    ]
