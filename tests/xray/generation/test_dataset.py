"""The dataset layout without any network: seeds, sharding, PNG records, resume checks, index."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from genlab.errors import UserError
from xray.data.prompts import ClassPrompt
from xray.generation import dataset

PROMPTS = [ClassPrompt("chest", "chest x-ray"), ClassPrompt("knee", "knee x-ray", "color", 2)]
SETTINGS = {
    "steps": 2,
    "guidance_scale": 7.5,
    "height": 8,
    "width": 8,
    "sampler": "ddim",
    "numerics": "keras_cv",
    "precision": "float32",
    "weight_source": "random",
}


def test_plan_gives_each_image_a_stable_seed_of_its_own():
    plan = dataset.plan_images(PROMPTS, 3, run_seed=7, negative_prompt="text")
    assert [job.file_name for job in plan] == [
        "chest/chest_0000.png",
        "chest/chest_0001.png",
        "chest/chest_0002.png",
        "knee/knee_0000.png",
        "knee/knee_0001.png",
    ]
    assert [job.negative_prompt for job in plan] == ["text"] * 3 + ["color"] * 2
    assert len({job.seed for job in plan}) == len(plan)
    assert plan == dataset.plan_images(PROMPTS, 3, run_seed=7, negative_prompt="text")
    assert plan[0].seed != dataset.plan_images(PROMPTS, 3, run_seed=8, negative_prompt="text")[0].seed
    # A class's seeds depend on its prompt and index only, not on the other classes.
    assert dataset.plan_images(PROMPTS[1:], 3, 7, "text") == plan[3:]


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_cover_every_image_exactly_once(num_shards):
    plan = dataset.plan_images(PROMPTS, 5, run_seed=0, negative_prompt="")
    shards = [dataset.shard(plan, num_shards, i) for i in range(num_shards)]
    names = [job.file_name for part in shards for job in part]
    assert sorted(names) == sorted(job.file_name for job in plan)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_index_out_of_range_names_the_flags():
    with pytest.raises(UserError, match="--shard_index=2 must be in \\[0, --num_shards=2\\)"):
        dataset.shard([], 2, 2)


def _write(out, job, value=0):
    return dataset.write_png(str(out), job, np.full((8, 8, 3), value, np.uint8), SETTINGS)


def test_png_carries_its_metadata_and_is_grayscale(tmp_path):
    job = dataset.plan_images(PROMPTS, 1, 0, "")[0]
    row = _write(tmp_path, job, 200)
    path = tmp_path / job.file_name
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (8, 8)
        assert np.asarray(image).max() == 200
    assert dataset.read_png_metadata(str(path)) == row
    assert row["seed"] == job.seed and row["prompt"] == "chest x-ray"
    assert not [name for name in os.listdir(path.parent) if name != path.name]


def test_resume_skips_finished_images_and_refuses_other_settings(tmp_path):
    plan = dataset.plan_images(PROMPTS, 2, 0, "")
    _write(tmp_path, plan[0])
    assert dataset.pending_jobs(str(tmp_path), plan, SETTINGS) == plan[1:]
    with pytest.raises(UserError, match="steps=2.*asks for 30.*--output_dir"):
        dataset.pending_jobs(str(tmp_path), plan, dict(SETTINGS, steps=30))
    other_seed = dataset.plan_images(PROMPTS, 2, 1, "")
    with pytest.raises(UserError, match="seed="):
        dataset.pending_jobs(str(tmp_path), other_seed, SETTINGS)


def test_a_shard_clears_only_its_own_partial_files(tmp_path):
    plan = dataset.plan_images(PROMPTS, 2, 0, "")
    for job in plan:  # What a kill leaves: the temporary name atomic_path gives.
        folder = tmp_path / job.class_name
        folder.mkdir(exist_ok=True)
        (folder / f".{job.class_name}_{job.index:04d}.tmp-x1y2{dataset.PARTIAL_SUFFIX}").write_bytes(b"half")
    mine = dataset.shard(plan, 2, 0)
    dataset.remove_partial_files(str(tmp_path), mine)
    left = sorted(p.name.split(".tmp-")[0][1:] for p in tmp_path.rglob("*.partial"))
    assert left == sorted(os.path.basename(job.file_name)[:-4] for job in dataset.shard(plan, 2, 1))


def test_index_matches_the_files_one_to_one(tmp_path):
    plan = dataset.plan_images(PROMPTS, 2, 0, "")
    for job in plan:
        _write(tmp_path, job)
    (tmp_path / "knee" / ".knee_0009.tmp-x.partial").write_bytes(b"half a png")
    rows = dataset.write_index(str(tmp_path))
    with open(tmp_path / dataset.METADATA_FILE) as f:
        table = list(csv.DictReader(f))
    assert [r["file_name"] for r in table] == sorted(job.file_name for job in plan) == [r["file_name"] for r in rows]
    assert {r["seed"] for r in table} == {str(job.seed) for job in plan}
    assert (tmp_path / dataset.GRID_FILE).stat().st_size > 0
    assert not list(tmp_path.rglob("*.partial"))


def test_index_refuses_foreign_and_moved_images(tmp_path):
    job = dataset.plan_images(PROMPTS, 1, 0, "")[0]
    _write(tmp_path, job)
    os.rename(tmp_path / job.file_name, tmp_path / "chest" / "renamed.png")
    with pytest.raises(UserError, match="renamed.png says it is 'chest/chest_0000.png'"):
        dataset.write_index(str(tmp_path))
    os.remove(tmp_path / "chest" / "renamed.png")
    Image.new("L", (8, 8)).save(tmp_path / "chest" / "mine.png")
    with pytest.raises(UserError, match="mine.png has no generation record"):
        dataset.write_index(str(tmp_path))


def test_index_of_an_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="no generated images"):
        dataset.write_index(str(tmp_path))
