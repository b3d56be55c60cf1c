"""What a benchmark ran on, printed with every figure so figures from different machines never mix."""

import datetime
import os
import platform

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

    return (f"{datetime.date.today()}, {model}, {os.cpu_count()} cores, ISA: {isa}; "
            f"TensorFlow {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
