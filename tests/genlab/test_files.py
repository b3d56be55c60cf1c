"""genlab.files and genlab.errors: atomic writes with the modes `open()` gives, the one CSV writer,
and the one-line errors of a full disk or a missing permission."""

import errno
import os
import stat

import numpy as np
import pytest

from genlab.errors import exit_on_user_error
from genlab.files import read_csv, write_csv, write_text
from lenet.sorting import prepare_output_dir, publish, write_sorted_images


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_mode_open_gives(tmp_path, umask):
    # mkstemp makes private (0600) files; a dataset in a team's shared folder must be readable by the team.
    write_text(tmp_path / "a.txt", "x")
    with open(tmp_path / "b.txt", "w") as f:
        f.write("x")
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.txt") == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]  # No temporary file left behind.


def test_a_published_folder_gets_the_mode_mkdir_gives(tmp_path, umask):
    out = tmp_path / "sorted"
    staging = prepare_output_dir(str(out), overwrite=False)
    write_sorted_images(staging, np.zeros((2, 28, 28, 1), np.uint8), np.eye(10)[:2])
    publish(staging, str(out))
    assert mode(out) == 0o777 & ~umask
    assert mode(out / "predictions.csv") == 0o666 & ~umask


def test_csv_keeps_commas_quotes_and_newlines_and_fills_missing_columns(tmp_path):
    rows = [{"file": "a.png", "prompt": 'X-ray, "lateral" view'}, {"file": "b.png", "prompt": "two\nlines", "seed": 3}]
    write_csv(tmp_path / "t.csv", rows)
    assert read_csv(tmp_path / "t.csv") == [
        {"file": "a.png", "prompt": 'X-ray, "lateral" view', "seed": ""},
        {"file": "b.png", "prompt": "two\nlines", "seed": "3"},
    ]
    assert read_csv(tmp_path / "missing.csv") == []


@pytest.mark.parametrize(
    "error, words",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/out/x.png"),
            "the disk is full writing /data/out/x.png",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/data/out"), "no permission writing /data/out"),
    ],
)
def test_a_full_disk_or_a_permission_error_is_one_line(capsys, error, words):
    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_status:
        exit_on_user_error(main)([])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {words}; free space or fix permissions")


def test_other_errors_keep_their_traceback():
    def main(argv):
        raise OSError(errno.EIO, "I/O error")  # A fault, not the user's to fix: shown in full.

    with pytest.raises(OSError):
        exit_on_user_error(main)([])
