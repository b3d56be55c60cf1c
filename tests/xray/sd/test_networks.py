"""KerasCV's real Stable Diffusion networks (random weights, 128 px): what only they can show.

Everything that does not depend on the networks themselves runs on stand-ins
(xray/generation/test_generate.py); the program's own test and the notebook generate with the real set,
and xray/formats/test_diffusers_parity.py writes and reads KerasCV's weight files for all three networks.
"""

import h5py
import numpy as np
import pytest

from genlab.errors import UserError
from xray.formats.keras_cv_files import save_keras_cv_weights
from xray.sd.attention import use_chunked_attention
from xray.sd.networks import build_network
from xray.weights import load_stable_diffusion

pytestmark = pytest.mark.slow


def use_bfloat16(network):
    """Switches a built network to `mixed_bfloat16` in place: float32 weights, bfloat16 arithmetic.
    (What `--precision=auto` builds on CPUs with AVX-512 BF16 or AMX; checked equal below.)"""
    for layer in network._flatten_layers():
        layer.dtype_policy = "mixed_bfloat16"
    return network


def relative_error(got, expected):
    got, expected = np.asarray(got, dtype="float32"), np.asarray(expected, dtype="float32")
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)


def test_bfloat16_decoder_equals_one_built_in_bfloat16():
    exact = build_network("decoder", 128, "float32")
    built = build_network("decoder", 128, "mixed_bfloat16")  # As load_stable_diffusion builds it.
    for mine, source in zip(built.weights, exact.weights, strict=True):
        mine.assign(source)
    latents = np.random.default_rng(0).standard_normal((1, 16, 16, 4)).astype("float32")
    expected = np.asarray(exact(latents))
    np.testing.assert_array_equal(np.asarray(use_bfloat16(exact)(latents)), np.asarray(built(latents)))
    # A small relative error, not none (it did compute in bfloat16), and not a wrong dtype or skipped cast.
    assert 1e-4 < relative_error(built(latents), expected) < 0.05


def test_bfloat16_unet_stays_close_to_float32_and_barely_depends_on_the_batch():
    unet = build_network("diffusion_model", 128, "float32")
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype("float32") for shape in ((2, 16, 16, 4), (2, 320), (2, 77, 768))]
    expected = np.asarray(unet(inputs))
    use_bfloat16(unet)
    batched = np.asarray(unet(inputs), dtype="float32")
    alone = np.asarray(unet([x[:1] for x in inputs]), dtype="float32")
    assert 1e-4 < relative_error(batched, expected) < 0.05
    # In bfloat16 a sample's rounding depends on the batch it ran in, a little: why images made in
    # bfloat16 regenerate only approximately, and float32 is the precision for exact regeneration.
    assert relative_error(alone, batched[:1]) < 0.05


@pytest.mark.parametrize("name", ["diffusion_model", "decoder"])
def test_frozen_networks_compute_what_mixed_precision_computes(name):
    """`build_network(frozen=True)` under mixed_bfloat16 (how genlab-xray builds them): weights
    stored in bfloat16, and from the same weights the mixed policy's output, bit for bit."""
    mixed = build_network(name, 128, "mixed_bfloat16")
    frozen = build_network(name, 128, "mixed_bfloat16", frozen=True)
    assert {w.dtype for w in mixed.weights} == {"float32"} and {w.dtype for w in frozen.weights} == {"bfloat16"}
    for mine, source in zip(frozen.weights, mixed.weights, strict=True):
        mine.assign(np.asarray(source))  # Rounded to bfloat16, as the mixed policy rounds it on every call.
    rng = np.random.default_rng(0)
    shapes = ((2, 16, 16, 4), (2, 320), (2, 77, 768)) if name == "diffusion_model" else ((1, 16, 16, 4),)
    inputs = [rng.standard_normal(shape).astype("float32") for shape in shapes]
    inputs = inputs if name == "diffusion_model" else inputs[0]
    np.testing.assert_array_equal(np.asarray(frozen(inputs)), np.asarray(mixed(inputs)))


def test_a_unet_with_chunked_attention_computes_keras_cvs():
    """`use_chunked_attention` (genlab-xray's default) on the whole U-Net, with chunks small
    enough at 128 px that the 16 x 16 self-attentions run in 4 chunks and the others as KerasCV's."""
    unet = build_network("diffusion_model", 128, "float32", frozen=True)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype("float32") for shape in ((2, 16, 16, 4), (2, 320), (2, 77, 768))]
    expected = np.asarray(unet.predict_on_batch(inputs))
    use_chunked_attention(unet, chunk_bytes=8 * 256 * 4 * 64)  # 64 of the 256 queries a chunk.
    unet.make_predict_function(force=True)
    assert relative_error(unet.predict_on_batch(inputs), expected) < 1e-5


def test_a_file_of_another_network_is_refused(tmp_path, clip_bpe_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    save_keras_cv_weights(build_network("decoder", 128, "float32"), str(folder / "kcv_encoder.h5"))
    for name in ("kcv_diffusion_model.h5", "kcv_decoder.h5"):
        h5py.File(folder / name, "w").close()  # Never read: the first network's file fails first.
    with pytest.raises(UserError, match="kcv_encoder.h5' does not fit KerasCV's text_encoder"):
        load_stable_diffusion(128, "local", str(folder), clip_bpe_path)
