"""`tf.distribute` strategies by name, for the scripts' `--strategy` flag."""

import json
import os

import tensorflow as tf

from genlab.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name, tpu_address=""):
    """Returns the strategy called `name`.

    - default: one device (the GPU if there is one, else the CPU).
    - mirrored: every local GPU, gradients all-reduced.
    - multi_worker: several machines or processes; each reads its role from `TF_CONFIG`.
    - tpu: a Cloud TPU (Colab: leave `tpu_address` empty to find the runtime's TPU).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise UserError(f"--strategy=tpu found no TPU ({error}); use a TPU runtime or --tpu=ADDRESS") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief():
    """True in the one process that writes files (always, unless multi-worker says otherwise).

    Follows TF_CONFIG's convention: the "chief" task, or worker 0 when there is no chief.
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    has_chief = "chief" in config.get("cluster", {})
    return task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index", 0) == 0)
