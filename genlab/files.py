"""Atomic file writing: a reader (or a resumed job) never sees a half-written file."""

import contextlib
import json
import os
import tempfile

from genlab.errors import UserError


@contextlib.contextmanager
def atomic_path(path, temp_suffix=None):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The temporary name keeps the final suffix (`x.tmp-abc.png`), so libraries that pick a
    format from the extension (PIL, matplotlib, Keras) write the right one. A dataset
    writer passes `temp_suffix` instead, so a file left by a killed job never carries a
    name that image loaders pick up.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    stem, suffix = _split_suffix(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=temp_suffix or suffix, dir=directory or ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _split_suffix(name):
    # ".weights.h5" and ".keras" must survive intact: Keras checks the whole ending.
    for suffix in (".weights.h5",):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    stem, ext = os.path.splitext(name)
    return stem, ext


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_csv(path, rows):
    """Writes dict rows as CSV, with the last row's keys as the columns (older rows may lack some)."""
    fields = list(rows[-1])
    lines = [",".join(fields)] + [",".join(str(row.get(field, "")) for field in fields) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path, how_to_fix):
    """A JSON file's content, or a one-line `UserError` naming the file, the line and `how_to_fix`."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}; {how_to_fix}") from None


def _json_default(value):
    # NumPy scalars and arrays appear in metrics; JSON has no type for them.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_model_file(path, what, how_to_make):
    """Loads a `.keras` model, or raises a `UserError` naming `what` it should be and how to get one."""
    import keras  # Here, not at the top: the file helpers alone need no Keras.

    if not os.path.isfile(path):
        raise UserError(f"{what} file {path!r} does not exist; {how_to_make}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad or foreign file.
        raise UserError(f"{what} file {path!r} is not a loadable Keras model ({type(error).__name__}: {error})") from None
