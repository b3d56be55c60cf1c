"""What a machine (or Colab runtime) has, and what to run where, decided from what it reports.

No TensorFlow import here: the notebook asks before TensorFlow's TPU build is installed.
"""

import ctypes
import dataclasses
import glob
import importlib.abc
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")  # genlab.distribute.make_strategy's names.
# keras-team/keras-io#1652: compiling Stable Diffusion in mixed precision with XLA needed a GPU
# with at least 40 GB; smaller ones (Colab's free 16 GB T4) ran out of memory.
XLA_MIN_GPU_GIB = 40
# Where TensorFlow's TPU builds and their libtpu are published (googlecolab/colabtools#5164).
TPU_WHEELS = "https://storage.googleapis.com/libtpu-tf-releases/index.html"


# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX;
# elsewhere its own kernels run, and their batched matrix products (attention's) are far slower.
ONEDNN_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "1"}
# For a process that only runs networks forward (genlab-xray). oneDNN's kernels want weights in a
# blocked layout of their own; with Keras's variables as weights, TensorFlow reorders every
# weight on every call unless told the weights never change.
# Weights reordered once, kept.
INFERENCE_ONLY_ENVIRONMENT = dict(ONEDNN_ENVIRONMENT, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="1")


# What TensorFlow's pip build prints while it loads and looks for a GPU on a machine with no NVIDIA
# driver: expected there, and no error of the user's. Its C++ logging prints these before it reads
# TF_CPP_MIN_LOG_LEVEL. GENLAB_ALL_LOGS=1 shows them.
ALL_LOGS_ENV_VAR = "GENLAB_ALL_LOGS"
EXPECTED_WITHOUT_GPU = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"I\d{4} .*cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\."),
    re.compile(r"E\d{4} .*cuda_platform\.cc:\d+\] failed call to cuInit: .*"),
)


def quiet_tensorflow_start(environ=os.environ):
    """Makes TensorFlow's first import in this process leave out of stderr the lines
    `EXPECTED_WITHOUT_GPU` when it finds no GPU; every other line it prints comes as printed.
    Call it at a program's start: TensorFlow still loads only where the program first imports it.

    The import's lines are caught in a file, not filtered from a live stream, so nothing is lost
    or reordered; on a failed import, or with a GPU, all are shown. Unless set, TF_CPP_MIN_LOG_LEVEL
    is 2 (TensorFlow's C++ errors shown, its info and warnings not). Nothing changes with
    `GENLAB_ALL_LOGS=1` or once TensorFlow has loaded. Returns whether the import will be quiet.
    """
    if "tensorflow" in sys.modules or environ.get(ALL_LOGS_ENV_VAR) == "1":
        return False
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
    return True


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, with its loader wrapped in `_QuietLoader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # Once: the real finders find the spec.
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """The package's own loader, its module executed (and its GPUs listed) with stderr caught."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: the real loader's.
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        gpus = None
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                self.loader.exec_module(module)
                gpus = module.config.list_physical_devices("GPU")  # Where TensorFlow calls cuInit.
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                lines = caught.read().decode(errors="replace").splitlines(keepends=True)
                sys.stderr.write("".join(line for line in lines if gpus != [] or not is_expected_without_gpu(line)))
                sys.stderr.flush()


def is_expected_without_gpu(line):
    return any(pattern.fullmatch(line.rstrip("\n")) for pattern in EXPECTED_WITHOUT_GPU)


def _set_before_tensorflow(variables, environ):
    """Sets `variables` where the user has not set them; returns whether it could: once
    TensorFlow has loaded, it has read them already, so nothing is set."""
    if "tensorflow" in sys.modules:
        return False
    for name, value in variables.items():
        environ.setdefault(name, value)
    return True


def use_onednn_kernels(environ=os.environ):
    """oneDNN's CPU kernels for a process that trains (genlab-xray-finetune). Call it before
    TensorFlow loads; returns whether it could."""
    return _set_before_tensorflow(ONEDNN_ENVIRONMENT, environ)


def use_inference_only_kernels(environ=os.environ):
    """`INFERENCE_ONLY_ENVIRONMENT`, where the user has not set those variables; returns whether
    it could. Call it before TensorFlow loads, and only in a process that will never train: a
    kernel's kept weights would silently stay those of its first call. Once TensorFlow has
    loaded, something in the process may train, so nothing is set."""
    return _set_before_tensorflow(INFERENCE_ONLY_ENVIRONMENT, environ)


def keep_torch_out(modules=sys.modules):
    """Keeps PyTorch out of a TensorFlow program's process. KerasCV imports it where it is
    installed (as on Colab), only so that a process using both loads it first, and the program
    never uses it: it would hold memory for nothing. Call it in a program's own process before
    KerasCV loads; returns whether it could."""
    if "torch" in modules or "keras_cv" in modules:
        return False
    modules["torch"] = None  # `import torch` then raises ImportError, which KerasCV expects where it is not installed.
    return True


def limit_malloc_arenas(libc=None, cpus=None):
    """One glibc malloc arena per core, not glibc's eight: TensorFlow's thread pools spread a
    training step's small tensors and its graph over as many arenas as they have threads, and
    each arena keeps the memory freed in it. Call it in a program's own process before TensorFlow
    starts its threads; returns whether it could (glibc only)."""
    M_ARENA_MAX = -8  # glibc's malloc.h.
    try:
        libc = libc or ctypes.CDLL("libc.so.6")
        return libc.mallopt(M_ARENA_MAX, cpus or os.cpu_count() or 1) == 1
    except (OSError, AttributeError):  # Not glibc.
        return False


def has_tpu():
    """A TPU VM shows its chips as /dev/accel* (v2-v4) or /dev/vfio/N (v5e and later) before
    TensorFlow connects to them, so looking costs nothing on machines without one."""
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*") or os.environ.get("TPU_NAME"))


def gpu_memory_gib():
    """The first GPU's memory in GiB as `nvidia-smi` reports it, or None without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[:1]
    return float(first[0]) / 1024 if first and first[0].strip().replace(".", "", 1).isdigit() else None


def tpu_install_command(tensorflow_version):
    """pip's command for TensorFlow's TPU build matching the TensorFlow this package installed."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        f"tensorflow-tpu=={tensorflow_version}",
        "--find-links",
        TPU_WHEELS,
    ]


@dataclasses.dataclass
class RuntimePlan:
    accelerator: str  # "tpu", "gpu" or "cpu".
    xray_precision: str
    xray_jit_compile: bool
    notes: list

    def describe(self):
        return "\n".join(
            [
                f"Runtime: {self.accelerator}; Stable Diffusion in {self.xray_precision}"
                + (" with XLA" if self.xray_jit_compile else " without XLA")
            ]
            + self.notes
        )


def plan_runtime(accelerator, gpu_gib=None):
    """Where each lab runs on this runtime, and the X-ray generator's precision and compilation."""
    if accelerator == "gpu":
        # Tensor cores make float16 pay off on every GPU Colab offers; XLA only where it fits.
        big_enough = gpu_gib is not None and gpu_gib >= XLA_MIN_GPU_GIB
        notes = ["The GAN, LeNet-5 and Stable Diffusion run on the GPU."]
        if not big_enough:
            size = f"{gpu_gib:.0f} GB" if gpu_gib else "of unknown size"
            notes.append(
                f"The GPU is {size}: Stable Diffusion runs without XLA, which needs about "
                f"{XLA_MIN_GPU_GIB} GB to compile in mixed precision."
            )
        return RuntimePlan("gpu", "mixed_float16", big_enough, notes)
    if accelerator == "tpu":
        return RuntimePlan(
            "tpu",
            "auto",
            False,
            [
                "The GAN trains on the TPU cores (TPUStrategy); LeNet-5 and Stable Diffusion run on the TPU VM's host "
                "CPUs."
            ],
        )
    return RuntimePlan(
        "cpu", "auto", False, ["Everything runs on the CPU; auto precision is bfloat16 where the CPU has it."]
    )
