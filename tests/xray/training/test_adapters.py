"""LoRA on KerasCV's real Stable Diffusion networks (random weights): diffusers' file layout,
merging, what trains, and files for other architectures or ranks. The loop end to end is in
scripts/test_finetune_xrays.py; parity with diffusers' own LoRA in xray/formats/test_diffusers_parity.py."""

import keras
import numpy as np
import pytest

from genlab.errors import UserError
from xray.formats.keras_cv_files import save_keras_cv_weights
from xray.formats.lora_file import merge_adapters, read_adapters
from xray.sd.networks import MAX_PROMPT_TOKENS, build_network
from xray.training.adapters import add_adapters, load_adapters_into, merged_values, save_adapters

from helpers.numerics import fingerprint

pytestmark = pytest.mark.slow  # KerasCV's real networks.


def text_encoder(seed=0):
    keras.utils.set_random_seed(seed)  # The same seed, the same random base weights.
    return build_network("text_encoder", 128, "float32")


def encode(network, seed=1):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 49408, (2, MAX_PROMPT_TOKENS)).astype("int32")
    positions = np.tile(np.arange(MAX_PROMPT_TOKENS, dtype="int32"), (2, 1))
    return np.asarray(network({"tokens": tokens, "positions": positions}))  # Eager: nothing kept after the test.


def freeze_all_but_adapters(network):
    for variable in network.weights:
        if "lora_kernel" not in variable.path:
            variable.trainable = False  # What finetune() does.


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A real text encoder with rank-4 adapters, B made non-zero (trained adapters are), saved as a file."""
    network = text_encoder()
    adapters = add_adapters("text_encoder", network, rank=4, groups=("attention",))
    rng = np.random.default_rng(2)
    for layer in adapters.values():
        layer.lora_kernel_b.assign(rng.normal(scale=0.05, size=layer.lora_kernel_b.shape))
    path = str(tmp_path_factory.mktemp("lora") / "te.safetensors")
    save_adapters(path, adapters, {"base_weights": "random"})
    return network, adapters, path


def test_adapters_are_saved_in_diffusers_peft_layout(adapted):
    _, adapters, path = adapted
    assert len(adapters) == 12 * 4  # q, k, v and out of each of CLIP's 12 layers.
    values, record = read_adapters(path)
    module = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    assert set(values) == set(adapters) and module in values
    a, b = values[module]
    assert a.shape == (4, 768) and b.shape == (768, 4)  # PEFT's lora_A (r, in) and lora_B (out, r).
    np.testing.assert_array_equal(b, np.asarray(adapters[module].lora_kernel_b).T)
    assert record["rank"] == 4 and record["architecture"] == "stable-diffusion-1.x"


def test_merged_adapters_compute_what_unmerged_ones_do(adapted):
    network, _, path = adapted
    with_lora = encode(network)
    merged = text_encoder()
    base = encode(merged)
    merge_adapters({"text_encoder": merged}, path)
    assert np.abs(with_lora - base).max() > 1e-2  # The adapters change the output ...
    np.testing.assert_allclose(encode(merged), with_lora, atol=2e-5)  # ... and merging keeps exactly that change.


def test_a_network_with_adapters_on_is_written_with_them_merged(adapted, tmp_path):
    """What `genlab-xray-finetune --merge` writes from the trained networks: the file a fresh network
    loads equals the base with the saved adapters merged in, bit for bit, and holds no adapter matrix."""
    import h5py

    network, adapters, path = adapted
    freeze_all_but_adapters(network)
    written = tmp_path / "kcv_encoder.h5"
    save_keras_cv_weights(network, str(written), merged_values(adapters))
    expected = text_encoder()
    merge_adapters({"text_encoder": expected}, path)
    loaded = text_encoder(seed=5)
    loaded.load_weights(str(written))  # Keras's legacy reader, which KerasCV and --weights=local use.
    assert fingerprint(loaded) == fingerprint(expected) != fingerprint(text_encoder())
    with h5py.File(written, "r") as f:
        names = []
        f.visit(names.append)
    assert not [name for name in names if "lora" in name] and len(adapters) == 48


def test_only_adapter_weights_are_trainable(adapted):
    network, adapters, _ = adapted
    freeze_all_but_adapters(network)
    expected = {id(v) for layer in adapters.values() for v in (layer.lora_kernel_a, layer.lora_kernel_b)}
    assert {id(v) for v in network.trainable_variables} == expected


def test_files_for_another_architecture_or_rank_are_refused(tmp_path, adapted):
    from safetensors.numpy import save_file

    network, adapters, path = adapted
    foreign = str(tmp_path / "sdxl.safetensors")
    save_file(
        {
            "unet.add_embedding.linear_1.lora_A.weight": np.zeros((4, 2816), "float32"),
            "unet.add_embedding.linear_1.lora_B.weight": np.zeros((1280, 4), "float32"),
        },
        foreign,
    )
    with pytest.raises(
        UserError, match="not in KerasCV's SD 1.x networks: the adapters were made for another architecture"
    ):
        merge_adapters({"text_encoder": text_encoder()}, foreign)
    uneven = str(tmp_path / "uneven.safetensors")
    save_file(
        {
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((8, 768), "float32"),
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((768, 4), "float32"),
        },
        uneven,
    )
    with pytest.raises(UserError, match="do not pair up"):
        read_adapters(uneven)
    other_rank = {module: layer for module, layer in add_adapters("text_encoder", text_encoder(), rank=8).items()}
    with pytest.raises(UserError, match="has rank 4 adapters on 48 modules; this run trains rank 8"):
        load_adapters_into(other_rank, path)


def test_frozen_weights_in_bfloat16_compute_what_mixed_precision_computes(tmp_path):
    """`build_network(frozen=True)` under mixed_bfloat16 (what genlab-xray-finetune trains adapters
    with): weights stored in bfloat16, adapters in float32, and from the same weights file the
    same output and adapter gradients as the mixed policy's float32 weights, bit for bit. A
    training step changes the adapters and nothing else."""
    import tensorflow as tf

    written = str(tmp_path / "kcv_encoder.h5")
    keras.utils.set_random_seed(0)
    save_keras_cv_weights(build_network("text_encoder", 128, "float32"), written)
    results, networks = [], []
    for frozen in (False, True):
        network = build_network("text_encoder", 128, "mixed_bfloat16", frozen=frozen)
        network.load_weights(written)  # Keras's legacy reader: float32 values into bfloat16 weights.
        assert {w.dtype for w in network.weights} == {"bfloat16" if frozen else "float32"}
        freeze_all_but_adapters(network)
        adapters = add_adapters("text_encoder", network, rank=4, groups=("attention",))
        rng = np.random.default_rng(2)
        for layer in adapters.values():
            layer.lora_kernel_b.assign(rng.normal(scale=0.05, size=layer.lora_kernel_b.shape))
        assert {v.dtype for v in network.trainable_variables} == {"float32"} and len(network.trainable_variables) == 96
        tokens = np.random.default_rng(1).integers(0, 49408, (2, MAX_PROMPT_TOKENS)).astype("int32")
        positions = np.tile(np.arange(MAX_PROMPT_TOKENS, dtype="int32"), (2, 1))
        # Every output element matters differently.
        weights = tf.sin(tf.range(2 * MAX_PROMPT_TOKENS * 768, dtype=tf.float32))

        @tf.function
        def output_and_gradients():
            with tf.GradientTape() as tape:
                output = tf.cast(network({"tokens": tokens, "positions": positions}, training=True), "float32")
                loss = tf.reduce_sum(tf.reshape(output, [-1]) * weights)
            return output, tape.gradient(loss, network.trainable_variables)

        output, gradients = output_and_gradients()
        results.append([output.numpy()] + [g.numpy() for g in gradients])
        networks.append(network)
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)
    assert np.abs(results[0][2]).max() > 0  # The adapters' gradients are not trivially zero.

    frozen_network = networks[1]
    before = fingerprint(frozen_network)
    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.apply(results[1][1:], frozen_network.trainable_variables)
    after = fingerprint(frozen_network)
    changed = {i for i, (a, b) in enumerate(zip(before, after)) if a != b}
    trainable = {id(v) for v in frozen_network.trainable_variables}
    assert changed == {i for i, w in enumerate(frozen_network.weights) if id(w) in trainable} and len(changed) == 96
