"""The runtime decisions, made from what the runtime reports (no accelerator needed), and a quiet TensorFlow start."""

import importlib.util
import os
import subprocess
import sys

import pytest

from genlab import runtime

from helpers.checks import skip_or_fail


def test_a_16_gb_gpu_runs_stable_diffusion_in_float16_without_xla():
    plan = runtime.plan_runtime("gpu", gpu_gib=15.0)  # Colab's free T4 reports 15,360 MiB.
    assert (plan.xray_precision, plan.xray_jit_compile) == ("mixed_float16", False)
    assert "without XLA" in plan.describe() and "15 GB" in plan.describe()
    big = runtime.plan_runtime("gpu", gpu_gib=79.6)  # An A100 or H100 with 80 GB.
    assert (big.xray_precision, big.xray_jit_compile) == ("mixed_float16", True)
    assert not runtime.plan_runtime("gpu", gpu_gib=None).xray_jit_compile  # Unknown size: the safe choice.


def test_a_tpu_trains_the_gan_on_its_cores_and_the_rest_on_the_host():
    plan = runtime.plan_runtime("tpu")
    assert (plan.xray_precision, plan.xray_jit_compile) == ("auto", False)
    assert "GAN trains on the TPU cores" in plan.describe() and "host CPUs" in plan.describe()
    command = runtime.tpu_install_command("2.21.0")
    assert command[:3] == [sys.executable, "-m", "pip"] and "tensorflow-tpu==2.21.0" in command
    assert command[command.index("--find-links") + 1] == runtime.TPU_WHEELS


def test_gpu_memory_is_read_from_nvidia_smi(monkeypatch):
    def reports(stdout):
        def run(command, **kwargs):
            assert command[0] == "nvidia-smi"
            return subprocess.CompletedProcess(command, 0, stdout=stdout)

        monkeypatch.setattr(runtime.subprocess, "run", run)

    reports("15360\n")
    assert runtime.gpu_memory_gib() == 15.0
    reports("81559\n81559\n")  # Several GPUs: the first.
    assert round(runtime.gpu_memory_gib()) == 80

    def missing(command, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(runtime.subprocess, "run", missing)
    assert runtime.gpu_memory_gib() is None


def test_cpu_kernel_settings_keep_what_the_user_set_and_are_never_set_once_tensorflow_has_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}  # A user who turned oneDNN off.
    assert runtime.use_inference_only_kernels(environ)
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}
    training = {}
    assert runtime.use_onednn_kernels(training) and training == {"TF_ENABLE_ONEDNN_OPTS": "1"}  # Weights may change.
    monkeypatch.setitem(sys.modules, "tensorflow", sys)  # Loaded: this process may train, and has read its settings.
    untouched = {}
    assert (
        not runtime.use_inference_only_kernels(untouched)
        and not runtime.use_onednn_kernels(untouched)
        and untouched == {}
    )


@pytest.mark.slow  # New processes that load TensorFlow.
def test_keep_torch_out_keeps_kerascv_from_importing_pytorch_where_it_is_installed():
    if importlib.util.find_spec("torch") is None:  # Found, not imported: this process never needs it.
        skip_or_fail("PyTorch is not installed, so KerasCV cannot import it: pip install -e '.[test]'")

    def modules_after_keras_cv(prelude):
        code = f"import sys; {prelude}; import keras_cv; print(sys.modules.get('torch') is not None)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return result.stdout.split()[-1]

    assert modules_after_keras_cv("pass") == "True"  # Installed here, and KerasCV imports it.
    assert modules_after_keras_cv("from genlab.runtime import keep_torch_out; assert keep_torch_out()") == "False"
    loaded = {"keras_cv": sys}
    assert not runtime.keep_torch_out(loaded) and loaded == {"keras_cv": sys}  # Too late: nothing is changed.


def test_malloc_arenas_are_limited_to_one_per_core():
    class Libc:
        def __init__(self):
            self.calls = []

        def mallopt(self, option, value):
            self.calls.append((option, value))
            return 1

    libc = Libc()
    assert runtime.limit_malloc_arenas(libc, cpus=4) and libc.calls == [(-8, 4)]  # M_ARENA_MAX, from glibc's malloc.h.
    assert not runtime.limit_malloc_arenas(object())  # No mallopt: not glibc.


# As a program loads TensorFlow: the hook at its start, TensorFlow through Keras wherever it is first imported.
QUIET_IMPORT = (
    "from genlab.runtime import quiet_tensorflow_start; quiet_tensorflow_start(); "
    "import keras; print(keras.ops.sum(keras.ops.ones(3)))"
)


def test_tensorflows_lines_about_a_missing_gpu_are_left_out_and_every_other_line_kept():
    expected = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796507569.152797    5743 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
        "will not be used.\n",
        "E0000 00:00:1796507574.862566    5743 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)\n",
    ]
    real = [
        "E0000 00:00:1796507635.422194    5799 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: ...\n",
        "E0000 00:00:1796507574.862566    5743 cuda_platform.cc:52] something else about CUDA\n",
        "Traceback (most recent call last):\n",
    ]
    assert all(runtime.is_expected_without_gpu(line) for line in expected)
    assert not any(runtime.is_expected_without_gpu(line) for line in real)


@pytest.mark.slow  # New processes that load TensorFlow.
def test_tensorflow_loads_quietly_on_a_machine_without_a_gpu_and_genlab_all_logs_shows_everything():
    def stderr(**env):
        result = subprocess.run(
            [sys.executable, "-c", QUIET_IMPORT], capture_output=True, text=True, env=dict(os.environ, **env)
        )
        assert result.returncode == 0 and "3.0" in result.stdout, result.stderr
        return result.stderr.splitlines(keepends=True)

    everything = stderr(GENLAB_ALL_LOGS="1")
    if not any(runtime.is_expected_without_gpu(line) for line in everything):
        skip_or_fail("TensorFlow printed none of the lines of a machine without a GPU driver here")
    assert not any(runtime.is_expected_without_gpu(line) for line in stderr())
