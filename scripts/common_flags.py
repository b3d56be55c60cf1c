"""Flags every MNIST program shares, the flags a run used, and how every program runs.

Programs import only light modules at the top (flag definitions, plain-data configs), and the
libraries inside `main`: `--help` and flag errors answer at once, and TensorFlow is loaded
only when there is work to do.
"""

import os
import sys

from absl import app, flags

from genlab.errors import exit_on_user_error
from genlab.mnist import ENV_VAR
from genlab.runtime import STRATEGIES, quiet_tensorflow_start


def define_common_flags():
    flags.DEFINE_string(
        "mnist_path",
        os.environ.get(ENV_VAR, ""),
        f"Local MNIST .npz in keras.datasets.mnist's layout (default: ${ENV_VAR}, else Keras's download).",
    )
    flags.DEFINE_integer("seed", 0, "Seed for weights, noise and data order: same seed, same results.", lower_bound=0)
    flags.DEFINE_enum(
        "strategy",
        "auto",
        STRATEGIES,
        "tf.distribute strategy: auto (TPU if present, all GPUs if several, else one device), one device, all local "
        "GPUs, several workers (TF_CONFIG), or TPU.",
    )
    flags.DEFINE_string(
        "tpu", "", "TPU name or grpc:// address for --strategy=tpu (empty: this VM's own TPU, as on Colab)."
    )


def positive(name):
    """Registers a validator: the flag must be > 0."""
    flags.register_validator(name, lambda value: value > 0, message=f"--{name} must be greater than 0")


def flagfile_text(flag_values):
    """This project's flags as `--name=value` lines, for `flags.txt`: rerun the job with `--flagfile`."""
    lines = [
        flag.serialize()
        for module, module_flags in sorted(flag_values.flags_by_module_dict().items())
        if module.startswith("scripts") or module == "__main__"
        for flag in module_flags
    ]
    return "\n".join(sorted(lines)) + "\n"


def run_program(main):
    """Runs a program's flag-free `main()` under absl, as every script here does.

    `--help` lists this project's flags, stray positional arguments are refused, a
    `UserError` ends the program with one line and exit status 2, and TensorFlow, wherever the
    program first imports it, loads without its lines about a missing GPU
    (`genlab.runtime.quiet_tensorflow_start`).
    """
    _list_project_flags_in_help()
    quiet_tensorflow_start()

    @exit_on_user_error
    def main_with_argv(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        main()

    app.run(main_with_argv)


def _list_project_flags_in_help():
    """Makes `--help` list this project's flags, also under a console-script entry point.

    absl's `--help` shows the key flags of the program's main module (named by argv[0]),
    which is pip's wrapper, not the module that defined the flags.
    """
    flag_values = flags.FLAGS
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.startswith("scripts"):
            for flag in module_flags:
                flag_values.register_key_flag_for_module(sys.argv[0], flag)
