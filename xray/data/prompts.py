"""The classes of an X-ray dataset: a folder name and the prompt that fills it.

Built-in prompts cover chest and bone radiographs. A prompt file (JSON or YAML) replaces
them: a list of entries, each with `class` and `prompt`, optionally `negative_prompt`
and `count`:

    - class: chest_normal
      prompt: Frontal chest X-ray of healthy lungs
      count: 100
    - class: wrist_fracture
      prompt: X-ray of a fractured distal radius, lateral view
      negative_prompt: color, text, cast
"""

import dataclasses
import json
import os
import re

import yaml

from genlab.errors import UserError


@dataclasses.dataclass(frozen=True)
class ClassPrompt:
    class_name: str  # A safe folder name: lower-case letters, digits, "_" and "-".
    prompt: str
    negative_prompt: str | None = None  # None: the run's --negative_prompt.
    count: int | None = None  # None: the run's --images_per_prompt.


BUILTIN_PROMPTS = (
    ClassPrompt("chest_normal", "Frontal chest X-ray of healthy lungs, posteroanterior radiograph"),
    ClassPrompt("chest_pneumonia", "Frontal chest X-ray showing pneumonia, consolidation in the right lower lobe"),
    ClassPrompt("chest_cardiomegaly", "Frontal chest X-ray showing cardiomegaly, an enlarged heart silhouette"),
    ClassPrompt("radius_fracture", "X-ray of a fractured radius bone, lateral view of the forearm"),
    ClassPrompt("hand_normal", "Posteroanterior X-ray radiograph of a healthy adult hand"),
    ClassPrompt("knee_osteoarthritis", "Anteroposterior knee X-ray showing osteoarthritis, joint space narrowing"),
)

_ENTRY_KEYS = {"class", "prompt", "negative_prompt", "count"}


def prompts_for_classes(class_names, caption_template):
    """A prompt per class: the built-in one where the class is built in, else `caption_template`
    (with `{class_name}`) filled in, as fine-tuning captions such classes."""
    if "{class_name}" not in caption_template or caption_template.count("{") != 1:
        raise UserError(f"--caption_template={caption_template!r} needs {{class_name}} once and no other braces")
    builtin = {p.class_name: p for p in BUILTIN_PROMPTS}
    return [
        builtin.get(name) or ClassPrompt(name, caption_template.format(class_name=name.replace("_", " ")))
        for name in class_names
    ]


def safe_class_name(name):
    """A folder name made from `name` that cannot escape the dataset folder.

    "Chest X-ray: Pneumonia" -> "chest_x-ray_pneumonia"; "../../etc" -> "etc".
    """
    safe = re.sub(r"[^a-z0-9_-]+", "_", str(name).strip().lower()).strip("_-")
    return safe


def load_prompt_file(path):
    """Reads a JSON or YAML prompt file into `ClassPrompt`s, or raises a one-line `UserError`."""
    if not os.path.isfile(path):
        raise UserError(
            f"prompt file {path!r} does not exist; pass --prompt_file=PATH to a JSON or YAML list of "
            f"{{class, prompt}} entries"
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    entries = _parse(path, text)
    if not isinstance(entries, list) or not entries:
        raise UserError(f"prompt file {path!r} must hold a non-empty list of entries, each with 'class' and 'prompt'")
    prompts = [_entry_to_prompt(path, number, entry) for number, entry in enumerate(entries, start=1)]
    _check_unique_classes(prompts, source=f"prompt file {path!r}")
    return prompts


def load_validation_prompts(path, first_seed):
    """[(prompt, seed)] from a JSON or YAML list whose entries are prompts or {prompt, seed}; an
    entry without a seed takes `first_seed` plus its place in the list. One-line `UserError`s."""
    if not os.path.isfile(path):
        raise UserError(f"--validation_prompts={path} does not exist; pass a JSON or YAML list of prompts")
    with open(path, encoding="utf-8") as f:
        entries = _parse(path, f.read())
    if not isinstance(entries, list) or not entries:
        raise UserError(
            f"--validation_prompts={path} must hold a non-empty list of prompts or {{prompt, seed}} entries"
        )
    pairs = []
    for number, entry in enumerate(entries, start=1):
        entry = {"prompt": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or set(entry) - {"prompt", "seed"} or not str(entry.get("prompt", "")).strip():
            raise UserError(
                f"--validation_prompts={path}, entry {number}: expected a prompt, or a mapping with 'prompt' and "
                "an optional 'seed'"
            )
        seed = entry.get("seed", first_seed + number - 1)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserError(f"--validation_prompts={path}, entry {number}: 'seed' must be a whole number, 0 or more")
        pairs.append((str(entry["prompt"]).strip(), seed))
    return pairs


def _parse(path, text):
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(
                f"prompt file {path!r} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
            ) from None
    try:
        return yaml.safe_load(text)  # safe_load builds plain data only, never Python objects.
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise UserError(f"prompt file {path!r} is not valid YAML: {problem}{where}") from None


def _entry_to_prompt(path, number, entry):
    where = f"prompt file {path!r}, entry {number}"
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping with 'class' and 'prompt', got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(_ENTRY_KEYS))}"
        )
    for key in ("class", "prompt"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise UserError(f"{where}: '{key}' must be a non-empty string")
    class_name = safe_class_name(entry["class"])
    if not class_name:
        raise UserError(f"{where}: class {entry['class']!r} has no letters or digits to make a folder name from")
    negative = entry.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise UserError(f"{where}: 'negative_prompt' must be a string")
    count = entry.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise UserError(f"{where}: 'count' must be a whole number of at least 1, got {count!r}")
    return ClassPrompt(class_name, entry["prompt"].strip(), negative, count)


def _check_unique_classes(prompts, source):
    seen = set()
    for prompt in prompts:
        if prompt.class_name in seen:
            raise UserError(f"{source}: class {prompt.class_name!r} appears twice; give each prompt its own class name")
        seen.add(prompt.class_name)
