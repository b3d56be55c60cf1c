"""The diffusers bridge: the checks it makes before converting anything (parity:
xray/formats/test_diffusers_parity.py)."""

import json

import numpy as np
import pytest
from keras_cv.src.models.stable_diffusion.clip_tokenizer import SimpleTokenizer
from safetensors.numpy import load_file, save_file

from genlab.errors import UserError
from xray.data.prompts import BUILTIN_PROMPTS
from xray.formats import diffusers as bridge
from xray.formats.export import network_tensors
from xray.formats.safetensors_file import SafetensorsFile, write_safetensors
from xray.sd.networks import MAX_PROMPT_TOKENS, build_network
from xray.sd.sampler import NoiseSchedule, tokenize

from helpers.checks import import_peer
from helpers.sd1_checkpoint import write_configs

PROMPTS = [p.prompt for p in BUILTIN_PROMPTS] + ["", "X-ray of a fractured radius bone"]


def _with_weight_files(folder, text_encoder_tensors=None):
    for sub, name in (
        ("text_encoder", "model"),
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
    ):
        tensors = (
            text_encoder_tensors if sub == "text_encoder" and text_encoder_tensors else {"x": np.zeros(1, np.float32)}
        )
        save_file(tensors, str(folder / sub / f"{name}.safetensors"))
    return folder


def test_safetensors_files_read_and_write_as_the_safetensors_package_does(tmp_path):
    import ml_dtypes

    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.normal(size=(3, 5)).astype(np.float32),
        "f16": rng.normal(size=7).astype(np.float16),
        "bf16": rng.normal(size=(2, 2)).astype(ml_dtypes.bfloat16),
        "i64": np.arange(77)[None],
        "scalar": np.array(2.5, np.float32),
    }
    theirs = tmp_path / "theirs.safetensors"
    save_file(tensors, str(theirs), metadata={"format": "pt"})
    with SafetensorsFile(str(theirs)) as f:
        assert sorted(f.keys()) == sorted(tensors) and f.metadata == {"format": "pt"} and f.shape("f32") == (3, 5)
        for name, value in tensors.items():
            assert f.get(name).dtype == value.dtype and f.get(name).tobytes() == value.tobytes(), name
    ours = tmp_path / "ours.safetensors"
    dtypes = {"f32": "F32", "f16": "F16", "bf16": "BF16", "i64": "I64", "scalar": "F32"}
    write_safetensors(str(ours), [(n, v.shape, dtypes[n], lambda v=v: v) for n, v in tensors.items()])
    assert {n: v.tobytes() for n, v in load_file(str(ours)).items()} == {n: v.tobytes() for n, v in tensors.items()}

    theirs.write_bytes(theirs.read_bytes()[:-4])  # Truncated: the last tensor's bytes lie past the end.
    with pytest.raises(ValueError, match="past the file's end"):
        SafetensorsFile(str(theirs))


def test_refuses_pickled_weights(tmp_path, clip_bpe_path):
    write_configs(tmp_path, clip_bpe_path)
    (tmp_path / "text_encoder" / "pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(UserError, match="text_encoder/pytorch_model.bin is a pickled PyTorch file, which can run code"):
        bridge.open_checkpoint(str(tmp_path))
    single = tmp_path / "sd-v1-4.ckpt"
    single.write_bytes(b"a pickle")
    with pytest.raises(UserError, match="single-file checkpoint"):
        bridge.open_checkpoint(str(single))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(unet={"cross_attention_dim": 1024}), "unet/config.json has cross_attention_dim=1024 (that is SD 2.x)"),
        (dict(unet={"use_linear_projection": True}), "use_linear_projection=True (that is SD 2.x)"),
        (dict(unet={"addition_embed_type": "text_time"}), "addition_embed_type='text_time' (that is SDXL)"),
        (dict(text_encoder={"hidden_size": 1024}), "text_encoder/config.json has hidden_size=1024 (that is SD 2.x)"),
        (dict(unet={"in_channels": 9}), "in_channels=9 (that is an inpainting checkpoint, not supported; genlab-xray"),
        (dict(vae={"latent_channels": 16}), "vae/config.json has latent_channels=16, SD 1.x has 4"),
    ],
)
def test_other_architectures_are_named(tmp_path, clip_bpe_path, overrides, message):
    write_configs(tmp_path, clip_bpe_path, **overrides)
    with pytest.raises(UserError, match="is not a Stable Diffusion 1.x checkpoint") as error:
        bridge.open_checkpoint(str(_with_weight_files(tmp_path)))
    assert message in str(error.value)


@pytest.mark.slow
def test_missing_or_misshapen_tensors_are_named(tmp_path, clip_bpe_path):
    encoder = build_network("text_encoder", 128, "float32")
    before = [w.numpy().copy() for w in encoder.weights]
    # The text encoder's own weights under diffusers' names (the export's inverse mapping),
    # C-contiguous as PyTorch saves them (safetensors writes an array's raw buffer).
    tensors = {
        name: np.ascontiguousarray(produce()) for name, _, _, produce in network_tensors("text_encoder", encoder)
    }
    write_configs(tmp_path, clip_bpe_path)
    cases = [
        (
            {k: v for k, v in tensors.items() if k != "encoder.layers.5.mlp.fc2.bias"},
            "lacks tensor 'encoder.layers.5.mlp.fc2.bias'",
        ),
        (
            dict(tensors, **{"final_layer_norm.weight": np.ones(512, np.float32)}),
            "tensor 'final_layer_norm.weight' has shape (512,), KerasCV needs (768,)",
        ),
        (
            dict(tensors, **{"encoder.layers.12.mlp.fc1.weight": np.ones(3, np.float32)}),
            "no place for, e.g. 'encoder.layers.12.mlp.fc1.weight'",
        ),
    ]
    for case, message in cases:
        checkpoint = bridge.open_checkpoint(str(_with_weight_files(tmp_path, case)))
        with pytest.raises(UserError, match="model.safetensors") as error:
            checkpoint.load_weights("text_encoder", encoder)
        assert message in str(error.value)
    for weight, value in zip(encoder.weights, before):  # Nothing was half-loaded.
        np.testing.assert_array_equal(weight.numpy(), value)

    truncated = _with_weight_files(tmp_path, tensors) / "text_encoder" / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(UserError, match="model.safetensors is not a readable safetensors file"):
        bridge.open_checkpoint(str(tmp_path)).load_weights("text_encoder", encoder)
    for weight, value in zip(encoder.weights, before):  # Nothing was half-loaded.
        np.testing.assert_array_equal(weight.numpy(), value)

    # transformers 4 names (text_model.*, plus the position_ids buffer) load the same weights.
    old_names = {f"text_model.{k}": v + 1.0 for k, v in tensors.items()}
    old_names["text_model.embeddings.position_ids"] = np.arange(MAX_PROMPT_TOKENS)[None]
    bridge.open_checkpoint(str(_with_weight_files(tmp_path, old_names))).load_weights("text_encoder", encoder)
    for weight, value in zip(encoder.weights, before):
        np.testing.assert_allclose(weight.numpy(), value + 1.0, rtol=0, atol=1e-6)


def test_tokenizer_comes_from_the_checkpoint_and_matches_clip(tmp_path, clip_bpe_path):
    write_configs(tmp_path, clip_bpe_path)
    checkpoint = bridge.open_checkpoint(str(_with_weight_files(tmp_path)))
    clip = SimpleTokenizer(clip_bpe_path)
    assert [tokenize(checkpoint.tokenizer(), p) for p in PROMPTS] == [tokenize(clip, p) for p in PROMPTS]
    vocab = json.loads((tmp_path / "tokenizer" / "vocab.json").read_text())
    vocab["<my-new-token>"] = len(vocab)  # What textual inversion adds.
    (tmp_path / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="added tokens are not supported"):
        checkpoint.tokenizer()


def test_schedule_follows_the_scheduler_config(tmp_path, clip_bpe_path):
    write_configs(tmp_path, clip_bpe_path)
    schedule = bridge.open_checkpoint(str(_with_weight_files(tmp_path))).noise_schedule()
    # SD 1.x's scaled-linear betas are the schedule KerasCV hard-codes.
    np.testing.assert_allclose(schedule.alphas_cumprod, NoiseSchedule.keras_cv().alphas_cumprod, rtol=0, atol=1e-6)
    assert schedule.timesteps(5).tolist() == [801, 601, 401, 201, 1]  # "leading" spacing, offset 1.
    assert schedule.final_alpha_cumprod == pytest.approx(schedule.alphas_cumprod[0])  # set_alpha_to_one=False.
    assert NoiseSchedule.keras_cv().timesteps(5).tolist() == [999, 749, 500, 250, 0]
    with pytest.raises(UserError, match="prediction_type 'v_prediction'"):
        NoiseSchedule.from_diffusers_config({"prediction_type": "v_prediction"}, "scheduler")


def test_timesteps_equal_diffusers_ddim_scheduler():
    diffusers = import_peer("diffusers")
    for spacing in ("leading", "trailing", "linspace"):
        config = dict(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            set_alpha_to_one=False,
            timestep_spacing=spacing,
        )
        reference = diffusers.DDIMScheduler(**config)
        reference.set_timesteps(25)
        ours = NoiseSchedule.from_diffusers_config(config, "test")
        assert ours.timesteps(25).tolist() == reference.timesteps.tolist(), spacing
        np.testing.assert_allclose(ours.alphas_cumprod, reference.alphas_cumprod.numpy(), rtol=1e-5)


def test_a_malformed_config_names_the_file_and_line(tmp_path, clip_bpe_path):
    write_configs(tmp_path, clip_bpe_path)
    (tmp_path / "vae" / "config.json").write_text('{\n  "latent_channels": 4,\n}')
    with pytest.raises(UserError, match=r"vae/config.json is not valid JSON: .* at line 3; repair or re-download"):
        bridge.open_checkpoint(str(_with_weight_files(tmp_path)))
