"""Files the labs write: checked before anything is created, written atomically (a reader or a
resumed job never sees a half-written file) with the mode `open()` gives, CSV and JSON."""

import contextlib
import csv
import hashlib
import io
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
    # mkstemp makes the file private (0600); the finished file gets the mode `open()` gives,
    # so a dataset written into a team's shared folder is readable by the team.
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_path(path, flag, folder=True):
    """Raises a one-line `UserError` unless `path` can be created or written as a folder (or a file).

    Checked before a program creates anything: a file where a folder should go (or the
    reverse), or a parent the user cannot write in, is named with the flag that set it.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        if folder and not os.path.isdir(path):
            raise UserError(f"{flag}={path} is a file, not a folder; remove it or choose another {flag}")
        if not folder and os.path.isdir(path):
            raise UserError(f"{flag}={path} is a folder, not a file; choose a file name for {flag}")
        target = path if folder else os.path.dirname(path)
        if not os.access(target, os.W_OK | os.X_OK):
            raise UserError(f"{flag}={path}: no permission to write in {target}; choose another {flag}")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{flag}={path}: {parent} is a file, not a folder; choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag}={path}: no permission to create it in {parent}; choose another {flag}")


def current_umask():
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def file_digest(path, algorithm="sha256"):
    """The hex digest of a file's bytes (hashlib's `algorithm`), read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_csv(path, rows, columns=None):
    """Writes dict rows as CSV (the `csv` module's quoting, so commas and quotes in prompts survive).

    `columns` defaults to every key in the order first seen; a row lacking one leaves it empty.
    """
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path):
    """The rows of a CSV file as dicts of strings ([] if the file does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


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
        raise UserError(
            f"{what} file {path!r} is not a loadable Keras model ({type(error).__name__}: {error})"
        ) from None
