"""Every program checks where it will write before it writes: one line, exit status 2, nothing left behind."""

import pytest

from genlab.errors import UserError
from genlab.files import check_output_path

from helpers.programs import run_program

# Each program, with the flag naming where it writes (set to a path below) and the least else it needs.
PROGRAMS = [
    ("scripts.train_gan", "--output_dir", []),
    ("scripts.mnist_lab", "--output_dir", []),
    ("scripts.train_lenet", "--model_path", []),
    ("scripts.sort_digits", "--output_dir", []),
    ("scripts.generate_xrays", "--output_dir", ["--weights=random", "--image_size=128"]),
    ("scripts.convert_diffusers", "--output_dir", ["--checkpoint=/nonexistent"]),
    ("scripts.xray_data", "--output_dir", ["--source=medmnist:pneumoniamnist", "--medmnist_path=/nonexistent"]),
]


@pytest.mark.parametrize("module, flag, args", PROGRAMS)
def test_a_file_in_the_way_gets_one_line(tmp_path, module, flag, args):
    in_the_way = tmp_path / ("lenet.keras" if flag == "--model_path" else "out")
    if flag == "--model_path":
        in_the_way.mkdir()  # A folder where the model file should go.
    else:
        in_the_way.write_text("a file where the output folder should go")
    result = run_program(module, [f"{flag}={in_the_way}", *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and f"{flag}={in_the_way}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [in_the_way.name]  # Nothing else was created.


def test_output_paths_are_checked_up_the_tree(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--output_dir=.*/file/a/b: .*/file is a file, not a folder"):
        check_output_path(tmp_path / "file" / "a" / "b", "--output_dir")
    check_output_path(tmp_path / "new" / "deeper", "--output_dir")  # Creatable: no error, nothing created.
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr("os.access", lambda path, mode: False)  # As a user without write permission sees it.
    with pytest.raises(UserError, match="no permission to create it in"):
        check_output_path(tmp_path / "new", "--output_dir")


def test_required_flags_are_required_without_a_warning(tmp_path):
    help_text = run_program("scripts.convert_diffusers", ["--help"])  # absl's --help exits with status 1.
    assert "--checkpoint" in help_text.stdout and "Traceback" not in help_text.stderr
    assert "non-None default" not in help_text.stdout + help_text.stderr
    missing = run_program("scripts.convert_diffusers", [f"--output_dir={tmp_path}/kcv"])
    assert missing.returncode != 0 and "--checkpoint" in missing.stderr and "Traceback" not in missing.stderr
    assert "non-None default" not in missing.stderr
