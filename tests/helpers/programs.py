"""Running the project's programs as a user would: `python -m scripts.NAME ARGS` in a new process."""

import os
import signal
import subprocess
import sys
import time


def program_env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def run_program(module, args, env=None, **kwargs):
    """Runs `module` to the end; returns the CompletedProcess with text stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        env=env or program_env(),
        **kwargs,
    )


def start_program(module, args, env=None, **kwargs):
    """Starts `module` in the background (to kill it, or to run several at once); returns the Popen."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], env=env or program_env(), **kwargs)


def start_standin(*args):
    """Starts `tests/standin_sd.py ARGS` (a run on stand-in networks, for a kill test) in the background."""
    return subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "standin_sd.py"), *map(str, args)],
        env=program_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(process, ready, timeout):
    """SIGKILLs `process` as soon as `ready()` holds (checked every 10 ms), or once it has ended or
    `timeout` seconds have passed, and waits for it to go; returns whether `ready()` held."""
    deadline = time.time() + timeout
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return ready()


def run_cleanly(module, *args):
    """Runs `module` to the end and checks it exits 0 without a traceback; returns the CompletedProcess."""
    result = run_program(module, args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result
