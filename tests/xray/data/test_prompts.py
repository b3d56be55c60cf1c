"""Built-in prompts, safe class names, prompt-file errors, and fine-tuning's validation prompts."""

import json
import re

import pytest

from genlab.errors import UserError
from xray.data.prompts import BUILTIN_PROMPTS, ClassPrompt, load_prompt_file, load_validation_prompts, safe_class_name


def test_builtin_prompts_cover_chest_and_bone_with_safe_unique_names():
    names = [p.class_name for p in BUILTIN_PROMPTS]
    assert len(names) >= 5 and len(set(names)) == len(names)
    assert all(safe_class_name(name) == name for name in names)
    text = " ".join(p.prompt.lower() for p in BUILTIN_PROMPTS)
    for anatomy in ("chest", "radius", "hand", "knee", "pneumonia"):
        assert anatomy in text


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("Chest X-ray: Pneumonia", "chest_x-ray_pneumonia"),
        ("../../etc/passwd", "etc_passwd"),
        ("/absolute", "absolute"),
        ("..", ""),
        ("  Knee  OA ", "knee_oa"),
    ],
)
def test_safe_class_name_cannot_leave_the_dataset_folder(raw, safe):
    assert safe_class_name(raw) == safe


def test_reads_yaml_and_json_with_optional_fields(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "- class: Chest Normal\n  prompt: healthy lungs\n  count: 3\n"
        "- class: wrist\n  prompt: wrist fracture\n  negative_prompt: cast\n"
    )
    assert load_prompt_file(str(yaml_file)) == [
        ClassPrompt("chest_normal", "healthy lungs", None, 3),
        ClassPrompt("wrist", "wrist fracture", "cast", None),
    ]
    json_file = tmp_path / "p.json"
    json_file.write_text(json.dumps([{"class": "knee", "prompt": "knee x-ray"}]))
    assert load_prompt_file(str(json_file)) == [ClassPrompt("knee", "knee x-ray")]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.json", '[{"class": "a", "prompt": "b"},\n {"class": "c" "prompt": "d"}]', "line 2"),
        ("bad.yaml", "- class: a\n  prompt: b\n- class: [c\n", "line"),
        ("empty.yaml", "", "non-empty list"),
        ("map.yaml", "class: a\nprompt: b\n", "non-empty list"),
        ("noprompt.yaml", "- class: a\n  prompt: b\n- class: c\n", "entry 2: 'prompt'"),
        ("typo.yaml", "- class: a\n  prompt: b\n  negative: c\n", "entry 1: unknown key(s) 'negative'"),
        ("count.yaml", "- class: a\n  prompt: b\n  count: 0\n", "entry 1: 'count'"),
        ("dup.yaml", "- class: A\n  prompt: b\n- class: a\n  prompt: c\n", "class 'a' appears twice"),
        ("nothing.yaml", "- class: '../..'\n  prompt: b\n", "entry 1: class '../..'"),
        ("scalar.yaml", "- just a string\n", "entry 1: expected a mapping"),
    ],
)
def test_malformed_files_get_an_error_naming_the_place(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_prompt_file(str(path))
    assert message in str(error.value) and name in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_cannot_build_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("- class: a\n  prompt: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_prompt_file(str(path))


def test_missing_file_names_the_flag(tmp_path):
    with pytest.raises(UserError, match="--prompt_file"):
        load_prompt_file(str(tmp_path / "nope.yaml"))


def test_classes_get_their_built_in_prompt_or_the_caption_template():
    from xray.data.prompts import prompts_for_classes

    prompts = prompts_for_classes(["chest_normal", "viral_pneumonia"], "X-ray radiograph, {class_name}")
    assert prompts[0] == BUILTIN_PROMPTS[0]
    assert (prompts[1].class_name, prompts[1].prompt) == ("viral_pneumonia", "X-ray radiograph, viral pneumonia")


@pytest.mark.parametrize("template", ["X-ray radiograph", "X-ray of {class_name}, {view}"])
def test_a_caption_template_without_its_one_placeholder_is_refused(template):
    from xray.data.prompts import prompts_for_classes

    with pytest.raises(UserError, match="--caption_template=.* needs {class_name} once"):
        prompts_for_classes(["knee"], template)


def test_validation_prompts_take_their_seeds_or_follow_the_first(tmp_path):
    path = tmp_path / "validation.yaml"
    path.write_text("- Chest X-ray, PA view\n- prompt: Knee X-ray\n  seed: 42\n- prompt: Hand X-ray\n")
    assert load_validation_prompts(str(path), 7) == [("Chest X-ray, PA view", 7), ("Knee X-ray", 42), ("Hand X-ray", 9)]
    path = tmp_path / "validation.json"
    path.write_text('["Chest X-ray", {"prompt": "Knee X-ray", "seed": 0}]')
    assert load_validation_prompts(str(path), 3) == [("Chest X-ray", 3), ("Knee X-ray", 0)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", "must hold a non-empty list"),
        ("- prompt: Knee\n  seed: -1\n", "entry 1: 'seed' must be a whole number"),
        ("- Chest\n- prompt: Knee\n  seed: 1.5\n", "entry 2: 'seed' must be a whole number"),
        ("- class: knee\n  prompt: Knee\n", "entry 1: expected a prompt, or a mapping with 'prompt'"),
        ("- prompt: '  '\n", "entry 1: expected a prompt"),
    ],
)
def test_bad_validation_prompts_are_named(tmp_path, text, message):
    path = tmp_path / "validation.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_validation_prompts(str(path), 0)
    with pytest.raises(UserError, match="does not exist"):
        load_validation_prompts(str(tmp_path / "missing.yaml"), 0)
