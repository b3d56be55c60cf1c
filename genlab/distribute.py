"""`tf.distribute` strategies by name, for the scripts' `--strategy` flag."""

import json
import os
import socket
import sys

import keras
import tensorflow as tf

from genlab.errors import UserError
from genlab.runtime import STRATEGIES, has_tpu


def detect_runtime():
    """ "tpu", "gpu" or "cpu": the accelerator this machine (or Colab runtime) has."""
    if has_tpu():
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return "cpu"


def make_strategy(name, tpu_address=""):
    """Returns the strategy called `name`.

    - auto: tpu on a TPU runtime, mirrored with several GPUs, else default.
    - default: one device (the GPU if there is one, else the CPU).
    - mirrored: every local GPU, gradients all-reduced.
    - multi_worker: several machines or processes; each reads its role from `TF_CONFIG`.
    - tpu: a TPU; `tpu_address` empty means this VM's own (Colab's TPU runtimes, Cloud TPU
      VMs), else a TPU name or grpc:// address.
    """
    if name == "auto":
        runtime = detect_runtime()
        if runtime == "tpu":
            try:
                return make_strategy("tpu", tpu_address)
            except UserError as error:
                # Colab's TPU runtimes ship no TensorFlow, and the TPU build does not always install:
                # train on the host's CPUs rather than stop.
                print(f"--strategy=auto: {error}; training on this machine's CPUs instead", file=sys.stderr)
                return tf.distribute.get_strategy()
        if runtime == "gpu" and len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
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
            # "local": the chips attached to this VM; the empty default would look for a TPU
            # node over the network, which Colab no longer has.
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "local")
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


def local_tf_configs(num_workers):
    """`TF_CONFIG` values for `num_workers` worker processes on this machine (loopback).

    For trying and testing multi-worker training on one machine; each process gets one.
    """
    sockets = [socket.socket() for _ in range(num_workers)]
    for s in sockets:
        s.bind(("localhost", 0))  # Free ports, released just before the workers bind them.
    cluster = {"worker": [f"localhost:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(num_workers)]


class PrebuiltModel(keras.Model):
    """Base of a model made of networks built before it (functional models) and trained by its
    own `train_step`, with no `call`.

    Under a strategy, Keras 3 (3.15 included) builds a model in `fit` and `evaluate` by calling
    it on a batch that it averages across replicas: such a model has no call, and the averaging
    fails under MultiWorkerMirroredStrategy (keras-team/keras#20585). Its networks are built,
    and its optimizers once compiled: there is nothing to build.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True

    # The hook `fit` and `evaluate` build through: private Keras API, held by setup.py's keras pin
    # (tests/test_private_apis.py).
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        pass
