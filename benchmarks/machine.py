"""What a benchmark ran on, printed with every figure so figures from different machines never mix."""

import datetime
import json
import os
import platform
import subprocess
import sys

# The instruction sets that decide how fast oneDNN and PyTorch run on a CPU.
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def describe_machine():
    """One line: date, CPU model, cores, the relevant instruction sets, and library versions."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = ", ".join(flag for flag in _ISA_FLAGS if flag in flags) or "unknown"
    import tensorflow as tf

    return (
        f"{datetime.date.today()}, {model}, {os.cpu_count()} cores, ISA: {isa}; "
        f"TensorFlow {tf.__version__}, intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
    )


# A convolution in each library, to make oneDNN say which instruction set it runs with.
_ONEDNN_PROBES = {
    "TensorFlow": "import tensorflow as tf; tf.function(lambda x: tf.nn.conv2d(x, tf.ones((3, 3, 8, 8)), 1, "
    "'SAME'))(tf.ones((1, 16, 16, 8)))",
    "PyTorch": "import torch; torch.nn.functional.conv2d(torch.ones(1, 64, 32, 32), torch.ones(64, 64, 3, 3))",
}


def describe_onednn(library):
    """oneDNN's own word on the instruction set it uses in `library` (TensorFlow or PyTorch) on this
    CPU, and for TensorFlow whether its oneDNN operations are on by default here (TensorFlow turns
    them on only on CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere most of its kernels are Eigen's)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TF_ENABLE_ONEDNN", "TF_ONEDNN"))}
    done = subprocess.run(
        [sys.executable, "-c", _ONEDNN_PROBES[library]],
        capture_output=True,
        text=True,
        env=dict(env, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="0"),
    )
    isa = next(
        (line.split("isa:", 1)[1].strip() for line in done.stdout.splitlines() if ",isa:" in line), "not reported"
    )
    if library != "TensorFlow":
        return f"{library}'s oneDNN: {isa}"
    default = "on" if "oneDNN custom operations are on" in done.stderr else "off"
    return f"{library}'s oneDNN: {isa}, its oneDNN operations {default} by default on this CPU"


def tensorflow_threads():
    """TensorFlow's intra-op thread count (the CPU count by default). `run_row_processes` puts it
    in every row, so PyTorch peers get the same without loading TensorFlow themselves."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def print_row_result(row, **figures):
    """A row's result, as `run_row_processes` reads it back, with this process's peak resident memory."""
    import resource

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(dict(row, **figures, peak_gib=peak_gib)))


def run_row_processes(script, rows):
    """Runs `script --row=JSON` for each row in a process of its own, so its peak memory is its own;
    yields (row, result) for each row that finished, after printing why any other failed.

    Each row gets `threads`, TensorFlow's thread count, for PyTorch peers: a peer's process that
    loaded TensorFlow to ask would count TensorFlow's memory as its own."""
    threads = tensorflow_threads()
    for row in rows:
        row = dict(row, threads=threads)
        done = subprocess.run([sys.executable, script, f"--row={json.dumps(row)}"], capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if lines:
            yield row, json.loads(lines[0][len("RESULT ") :])
        else:
            print(f"{row}: failed\n{done.stderr[-2000:]}")
