"""KerasCV's Stable Diffusion weight files: their names, and writing them.

    FOLDER/kcv_encoder.h5, kcv_diffusion_model.h5, kcv_decoder.h5   KerasCV's own layout
    FOLDER/vae_encoder.h5                                            the VAE's encoder (fine-tuning only)
    FOLDER/bpe_simple_vocab_16e6.txt.gz                              a converted checkpoint's tokenizer
    FOLDER/conversion.json                                           its schedule and numerics

`convert_checkpoint` writes such a folder from a diffusers checkpoint (read by `xray.formats.diffusers`),
so `--weights=local` loads it later without the bridge. `load_keras_cv_weights` reads any of them.
"""

import gzip
import os

import h5py
import keras

from genlab.files import atomic_path, check_output_path, read_json, write_bytes, write_json
from xray.formats.diffusers import open_checkpoint
from xray.sd.networks import IMAGE_ENCODER, NETWORKS, assign_in_place, build_network

# KerasCV 0.9.0's file names and pinned hashes (its constructors hold them inline).
KERAS_CV_FILES = {
    "text_encoder": ("kcv_encoder.h5", "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4"),
    "diffusion_model": ("kcv_diffusion_model.h5", "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe"),
    "decoder": ("kcv_decoder.h5", "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962"),
}
# The VAE's encoder; KerasCV's text encoder has the confusing name kcv_encoder.h5 above.
IMAGE_ENCODER_FILE = ("vae_encoder.h5", "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb")
TOKENIZER_FILE = "bpe_simple_vocab_16e6.txt.gz"  # CLIP's BPE merges, the file KerasCV's tokenizer reads.
CONVERSION_FILE = "conversion.json"  # Beside converted weights: the checkpoint's schedule and numerics.


def load_keras_cv_weights(model, path):
    """Reads a legacy HDF5 weight file (KerasCV's `kcv_*.h5`, or `save_keras_cv_weights`'s) into
    `model` as Keras's `load_weights` matches it (the layers that have weights, in order; each
    layer's trainable weights, then the rest), with every count and shape checked before any
    weight changes, and each value written into its variable's memory (`assign_in_place`).
    Raises ValueError for a file that does not fit."""
    # keras.src.legacy: private Keras API, held by setup.py's keras pin (tests/test_private_apis.py).
    from keras.src.legacy.saving.legacy_h5_format import load_attributes_from_hdf5_group

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f  # A whole saved model holds its weights there.
        names = [
            name
            for name in load_attributes_from_hdf5_group(group, "layer_names")
            if load_attributes_from_hdf5_group(group[name], "weight_names")
        ]
        layers = [(layer, layer.trainable_weights + layer.non_trainable_weights) for layer in model.layers]
        layers = [(layer, variables) for layer, variables in layers if variables]
        if len(names) != len(layers):
            raise ValueError(f"the file has weights for {len(names)} layers, {model.name} has {len(layers)}")
        pairs = []
        for name, (layer, variables) in zip(names, layers):
            datasets = [group[name][weight] for weight in load_attributes_from_hdf5_group(group[name], "weight_names")]
            if [tuple(d.shape) for d in datasets] != [tuple(v.shape) for v in variables]:
                raise ValueError(
                    f"layer {name!r} holds shapes {[d.shape for d in datasets]}, {layer.name} needs "
                    f"{[tuple(v.shape) for v in variables]}"
                )
            pairs += zip(variables, datasets)
        for variable, dataset in pairs:
            assign_in_place(variable, dataset[()])


def save_keras_cv_weights(model, path, values=None):
    """Writes `model`'s weights in the legacy HDF5 layout of KerasCV's own `kcv_*.h5` files.

    Keras 3's `save_weights` only writes `.weights.h5`; this layout is the one KerasCV (and
    `--weights=local`) load, so converted weights drop in where downloaded ones would. It is
    Keras's legacy writer (`save_weights_to_hdf5_group`) with one addition: `values`
    ({id(variable): array, or None to leave the variable out}) writes other values than the
    variables hold, so a network trained with LoRA is written with its adapters merged in.
    """
    # keras.src.legacy and Model._trainable_variables: private Keras API, held by setup.py's keras pin
    # (tests/test_private_apis.py).
    from keras.src.legacy.saving.legacy_h5_format import save_attributes_to_hdf5_group

    values = values or {}

    def write_group(group, weights):  # Keras's order: a layer's trainable weights, then the rest.
        weights = [w for w in weights if values.get(id(w), True) is not None]
        save_attributes_to_hdf5_group(group, "weight_names", [str(w.path).encode("utf8") for w in weights])
        for weight in weights:
            group.create_dataset(
                str(weight.path),
                data=values[id(weight)] if id(weight) in values else keras.ops.convert_to_numpy(weight),
            )

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            in_model = {id(w) for w in model.weights}
            save_attributes_to_hdf5_group(f, "layer_names", [layer.name.encode("utf8") for layer in model.layers])
            f.attrs["backend"] = keras.backend.backend().encode("utf8")
            f.attrs["keras_version"] = str(keras.__version__).encode("utf8")
            for layer in sorted(model.layers, key=lambda layer: layer.name):
                write_group(f.create_group(layer.name), layer.trainable_weights + layer.non_trainable_weights)
            write_group(
                f.create_group("top_level_model_weights"),
                [v for v in model._trainable_variables + model._non_trainable_variables if id(v) in in_model],
            )


def merges_text(tokenizer):
    """A KerasCV CLIP tokenizer's BPE merges in rank order, as CLIP's merges.txt holds them."""
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    return "#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n"


def save_tokenizer(tokenizer, path):
    """Writes a KerasCV CLIP tokenizer back as the gzipped BPE merges file it reads."""
    write_bytes(path, gzip.compress(merges_text(tokenizer).encode("utf-8"), mtime=0))


def convert_checkpoint(path, output_dir):
    """Writes a checkpoint as KerasCV weight files that `--weights=local` loads without the bridge.

    Beside the three `kcv_*.h5` files (and the VAE encoder's, for fine-tuning) go the checkpoint's
    tokenizer (as the gzipped BPE file KerasCV reads) and `conversion.json` (its scheduler config),
    so the converted folder samples exactly as the checkpoint does.
    """
    check_output_path(output_dir, "--output_dir")
    checkpoint = open_checkpoint(path)
    checkpoint.tokenizer()  # Checked before the long part.
    os.makedirs(output_dir, exist_ok=True)
    files = dict(KERAS_CV_FILES, **{IMAGE_ENCODER: IMAGE_ENCODER_FILE})
    for name in (*NETWORKS, IMAGE_ENCODER):
        network = build_network(name, image_size=128, precision="float32")  # Weights do not depend on image size.
        checkpoint.load_weights(name, network)
        save_keras_cv_weights(network, os.path.join(output_dir, files[name][0]))
        del network  # One network in memory at a time.
    with open(os.path.join(path, "tokenizer", "merges.txt"), "rb") as f:
        write_bytes(os.path.join(output_dir, TOKENIZER_FILE), gzip.compress(f.read()))
    write_json(
        os.path.join(output_dir, CONVERSION_FILE),
        {
            "source": os.path.abspath(path),
            "scheduler": checkpoint.read_config("scheduler", "scheduler_config.json"),
            "numerics": "diffusers",
        },
    )


def read_conversion(folder):
    """What `convert_checkpoint` recorded beside converted weights, or None for KerasCV's own files."""
    path = os.path.join(folder, CONVERSION_FILE)
    if not os.path.isfile(path):
        return None
    return read_json(path, how_to_fix="convert the checkpoint again")
