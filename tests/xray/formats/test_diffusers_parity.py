"""KerasCV with converted weights equals diffusers, both ways: SD 1.x's real architectures, random weights.

diffusers' UNet2DConditionModel and AutoencoderKL and transformers' CLIPTextModel are built
with Stable Diffusion 1.x's configuration, every parameter perturbed, saved as a diffusers
folder, converted, and run on the same inputs. Tolerance: the largest absolute difference
must be under 5e-5 of the output's largest magnitude: float32 has 6e-8 relative precision
and these networks sum thousands of products per output. With KerasCV's own numerics (tanh
GELU, epsilon 1e-5) the U-Net misses it, which is why the bridge switches them. All in
float32: the default precision, `auto`, is bfloat16 on CPUs with AVX-512 BF16.

Exported back, the checkpoint comes back tensor for tensor and diffusers loads it; diffusers'
own LoRA file (PEFT) runs in KerasCV's U-Net with diffusers' outputs, and saves back as the
same file.

Image-to-image and masked variation, given the same source latents and noise, end where
diffusers' StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline (with SD 1.x's
4-channel U-Net) end, with DDIM at eta 0.

Memory and time: each diffusers network is built, saved, run for its reference outputs and
freed before the next; the conversion program runs before this process builds its one KerasCV
set, and the program's files are read back into that same set rather than a second one.
"""

import json
import shutil

import numpy as np
import pytest

from xray import weights
from xray.config import XrayConfig
from xray.data.prompts import BUILTIN_PROMPTS, ClassPrompt
from xray.formats.diffusers import open_checkpoint
from xray.formats.keras_cv_files import KERAS_CV_FILES
from xray.formats.safetensors_file import SafetensorsFile
from xray.generation import dataset
from xray.generation.generate import generate_dataset, latent_masks
from xray.sd.networks import MAX_PROMPT_TOKENS, NETWORKS
from xray.sd.sampler import NoiseSchedule, Variation, encode_texts, sample_latents, timestep_embedding, tokenize
from xray.training.adapters import add_adapters, load_adapters_into, save_adapters
from xray.weights import load_image_encoder, load_stable_diffusion, load_tokenizer

from helpers.checks import import_peer
from helpers.numerics import array_digest, fingerprint
from helpers.programs import run_program
from helpers.sd1_checkpoint import write_checkpoint

pytestmark = pytest.mark.slow

RELATIVE_TOLERANCE = 5e-5
PROMPTS = [p.prompt for p in BUILTIN_PROMPTS] + ["", "color, text, watermark"]
TIMESTEPS = (981, 500, 1)
LORA_TIMESTEP = 500
# (steps, strength, masked): image-to-image at three strengths and two step counts, and masked variation.
VARIATION_CASES = [(steps, strength, False) for steps in (4, 10) for strength in (0.3, 0.75, 1.0)] + [
    (5, 0.6, True),
    (5, 1.0, True),
]


def assert_round_off(ours, reference):
    error = np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max()
    assert error < RELATIVE_TOLERANCE, f"relative error {error:.2e}"


def unet_inputs(timestep):
    rng = np.random.default_rng(timestep)
    return rng.standard_normal((2, 16, 16, 4), dtype=np.float32), rng.standard_normal((2, 77, 768), dtype=np.float32)


def decoder_latents():
    return np.random.default_rng(0).standard_normal((1, 16, 16, 4), dtype=np.float32)


def reference_outputs(name, network, token_ids):
    """What diffusers' (or transformers') own network computes on the inputs the tests use, NHWC."""
    torch = import_peer("torch")
    with torch.no_grad():
        if name == "text_encoder":
            return network(input_ids=torch.tensor(token_ids)).last_hidden_state.numpy()
        if name == "vae":  # KerasCV's decoder divides by the latent scale itself.
            latents = torch.tensor(decoder_latents().transpose(0, 3, 1, 2)) / 0.18215
            return network.decode(latents).sample.numpy().transpose(0, 2, 3, 1)
        return {timestep: unet_output(network, timestep) for timestep in TIMESTEPS}


def unet_output(network, timestep):
    torch = import_peer("torch")
    latent, context = unet_inputs(timestep)
    with torch.no_grad():
        sample = network(
            torch.tensor(latent.transpose(0, 3, 1, 2)), timestep, encoder_hidden_states=torch.tensor(context)
        ).sample
    return sample.numpy().transpose(0, 2, 3, 1)


def diffusers_lora(network, path):
    """Rank-4 PEFT adapters on diffusers' U-Net attention (random, as trained ones are not zero),
    saved as diffusers saves LoRA files; returns the U-Net's output with them."""
    torch = import_peer("torch")
    peft = import_peer("peft")
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(1)
    network.add_adapter(
        peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.05)  # PEFT's random B would swamp the output; trained adapters are small.
    save_file(
        {f"unet.{k}": v.contiguous() for k, v in get_peft_model_state_dict(network).items()},
        path,
        metadata={"format": "pt"},
    )
    return unet_output(network, LORA_TIMESTEP)


def variation_inputs():
    """Source latents, prompt and negative-prompt states, and a pixel mask whose edges lie off the
    latents' 8-pixel grid (NHWC)."""
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((1, 16, 16, 4), dtype=np.float32)
    context, unconditional = rng.standard_normal((2, 1, MAX_PROMPT_TOKENS, 768), dtype=np.float32)
    mask = np.zeros((1, 128, 128, 1), dtype=np.float32)
    mask[:, 37:101, 21:90] = 1.0
    return latents, context, unconditional, mask


def diffusers_variations(folder):
    """{case: (noise, final latents)} of diffusers' own pipelines on `variation_inputs`, NHWC; the
    noise is what the seeded generator gives the pipeline (its only draw at eta 0)."""
    torch = import_peer("torch")
    diffusers = import_peer("diffusers")
    transformers = import_peer("transformers")
    components = dict(
        unet=diffusers.UNet2DConditionModel.from_pretrained(folder / "unet"),
        vae=diffusers.AutoencoderKL.from_pretrained(folder / "vae"),
        text_encoder=transformers.CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer=transformers.CLIPTokenizer(
            str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt")
        ),
        scheduler=diffusers.DDIMScheduler.from_pretrained(folder / "scheduler", clip_sample=False),  # As SD 1.x says.
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipelines = {
        False: diffusers.StableDiffusionImg2ImgPipeline(**components),
        True: diffusers.StableDiffusionInpaintPipeline(**components),
    }
    latents, context, unconditional, mask = (torch.tensor(a) for a in variation_inputs())
    latents, mask = latents.permute(0, 3, 1, 2), mask.permute(0, 3, 1, 2)
    results = {}
    for seed, (steps, strength, masked) in enumerate(VARIATION_CASES):
        arguments = dict(
            prompt_embeds=context,
            negative_prompt_embeds=unconditional,
            image=latents,  # Four channels: taken as latents, not encoded.
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=7.5,
            eta=0.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        )
        if masked:  # The masked image's latents are unused with a 4-channel U-Net; given, none is encoded.
            arguments.update(mask_image=mask, masked_image_latents=latents, height=128, width=128)
        with torch.no_grad():
            final = pipelines[masked](**arguments).images
        noise = torch.randn(tuple(latents.shape), generator=torch.Generator().manual_seed(seed))
        results[steps, strength, masked] = (noise.numpy().transpose(0, 2, 3, 1), final.numpy().transpose(0, 2, 3, 1))
    return results


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, clip_bpe_path):
    """(folder, reference outputs, transformers' token ids for PROMPTS)."""
    import_peer("torch")
    import_peer("diffusers")
    transformers = import_peer("transformers")
    folder = tmp_path_factory.mktemp("sd1") / "checkpoint"
    token_ids = []

    lora_path = str(folder.parent / "diffusers_lora.safetensors")

    def use_network(name, network):
        if name == "text_encoder":  # The tokenizer is written first: transformers' own reads it.
            tokenizer = transformers.CLIPTokenizer(
                str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt")
            )
            token_ids.extend(tokenizer(PROMPTS, padding="max_length", max_length=MAX_PROMPT_TOKENS).input_ids)
        outputs = reference_outputs(name, network, token_ids)
        if name == "unet":  # Saved without them: the adapters go on after the network is written.
            outputs = (outputs, diffusers_lora(network, lora_path))
        return outputs

    references = write_checkpoint(folder, clip_bpe_path, use_network)
    references["unet"], references["unet_lora"] = references["unet"]
    references["variations"] = diffusers_variations(folder)  # Before this process builds KerasCV's set.
    yield folder, references, token_ids, lora_path
    shutil.rmtree(folder)  # 4 GB of safetensors.


def test_tokenizer_ids_equal_transformers(checkpoint):
    folder, _, token_ids, _ = checkpoint
    tokenizer = open_checkpoint(str(folder)).tokenizer()
    assert [tokenize(tokenizer, p) for p in PROMPTS] == token_ids


def tensor_digests(path):
    """{name: (dtype, shape, sha256 of the bytes)} of a safetensors file, read one tensor at a time."""
    with SafetensorsFile(str(path)) as f:
        return {name: (entry["dtype"], entry["shape"], array_digest(f.get(name))) for name, entry in f.entries.items()}


@pytest.fixture(scope="module")
def exported_folder(checkpoint, tmp_path_factory):
    """genlab-export-diffusers on the checkpoint read through the bridge: diffusers -> KerasCV -> diffusers."""
    folder = tmp_path_factory.mktemp("export") / "exported"
    result = run_program(
        "scripts.export_diffusers", ["--weights=diffusers", f"--weights_path={checkpoint[0]}", f"--output_dir={folder}"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    yield folder
    shutil.rmtree(folder)


def test_export_gives_back_every_tensor_and_diffusers_loads_it(checkpoint, exported_folder):
    # Before this process builds its KerasCV set: diffusers' pipeline is loaded while the process is small.
    torch = import_peer("torch")
    diffusers = import_peer("diffusers")
    for folder, stem in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ):
        original = tensor_digests(checkpoint[0] / folder / f"{stem}.safetensors")
        assert tensor_digests(exported_folder / folder / f"{stem}.safetensors") == original, folder
    pipeline = diffusers.StableDiffusionPipeline.from_pretrained(str(exported_folder), dtype=torch.float16)
    assert pipeline.unet.config.cross_attention_dim == 768 and pipeline.tokenizer("a chest X-ray").input_ids[0] == 49406
    del pipeline


@pytest.fixture(scope="module")
def converted_folder(checkpoint, tmp_path_factory):
    """What genlab-convert-diffusers writes, run as a user would, while this process is still small."""
    folder = tmp_path_factory.mktemp("kcv") / "converted"
    result = run_program("scripts.convert_diffusers", [f"--checkpoint={checkpoint[0]}", f"--output_dir={folder}"])
    assert result.returncode == 0, result.stderr[-3000:]
    yield folder
    shutil.rmtree(folder)  # 4 GB of weight files.


@pytest.fixture(scope="module")
def converted(checkpoint, converted_folder):
    """The checkpoint loaded through the bridge (`--weights=diffusers`), in float32."""
    return load_stable_diffusion(128, "diffusers", str(checkpoint[0]), precision="float32")


def test_converted_folder_holds_the_bridges_weights_and_settings(checkpoint, converted_folder, converted):
    assert sorted(p.name for p in converted_folder.iterdir()) == [
        "bpe_simple_vocab_16e6.txt.gz",
        "conversion.json",
        "kcv_decoder.h5",
        "kcv_diffusion_model.h5",
        "kcv_encoder.h5",
        "vae_encoder.h5",
    ]
    # Read back into the bridge's own networks after changing every weight: they come back bit for bit.
    for name in NETWORKS:
        network = getattr(converted, name)
        bridged = fingerprint(network)
        for weight in network.weights:
            weight.assign(weight + 1.0)
        weights._load_keras_cv_file(network, str(converted_folder / KERAS_CV_FILES[name][0]))
        assert fingerprint(network) == bridged, name
    # The folder's tokenizer, schedule and numerics are the checkpoint's.
    with open(converted_folder / "conversion.json") as f:
        conversion = json.load(f)
    assert conversion["numerics"] == "diffusers"
    assert (
        NoiseSchedule.from_diffusers_config(conversion["scheduler"], "").timesteps(25).tolist()
        == converted.schedule.timesteps(25).tolist()
    )
    tokenizer = load_tokenizer(str(converted_folder / "bpe_simple_vocab_16e6.txt.gz"))
    assert [tokenize(tokenizer, p) for p in PROMPTS] == checkpoint[2]


def test_text_encoder_equals_clip_text_model(checkpoint, converted):
    assert_round_off(encode_texts(converted, PROMPTS), checkpoint[1]["text_encoder"])


@pytest.mark.parametrize("timestep", TIMESTEPS)
def test_unet_equals_diffusers(checkpoint, converted, timestep):
    latent, context = unet_inputs(timestep)
    ours = converted.diffusion_model.predict_on_batch(
        {"latent": latent, "timestep_embedding": timestep_embedding(timestep, 2), "context": context}
    )
    assert_round_off(ours, checkpoint[1]["unet"][timestep])


def test_decoder_equals_autoencoder_kl(checkpoint, converted):
    assert_round_off(converted.decoder.predict_on_batch(decoder_latents()), checkpoint[1]["vae"])


@pytest.mark.parametrize("steps, strength, masked", VARIATION_CASES)
def test_variations_equal_diffusers_image_to_image_and_inpainting(checkpoint, converted, steps, strength, masked):
    latents, context, unconditional, mask = variation_inputs()
    noise, reference = checkpoint[1]["variations"][steps, strength, masked]
    variation = Variation(latents, strength, latent_masks(mask) if masked else None)
    ours = sample_latents(converted, noise, context, unconditional, steps, 7.5, variation=variation)
    assert_round_off(ours, reference)
    if masked:  # Outside the mask, the source's latents come back as they were.
        np.testing.assert_array_equal(ours[variation.mask[..., 0] == 0], latents[variation.mask[..., 0] == 0])


def test_the_smallest_strength_gives_the_source_back_within_the_vaes_round_trip(checkpoint, converted):
    """One step at the least noise gives back the VAE's round trip of the source, give or take a
    fraction of the round trip's own error: so the source, within that error. (Random networks:
    the VAE's round trip is far off, and one guided step of a random U-Net still moves the latents
    by a few hundredths.)"""
    encoder = load_image_encoder("diffusers", str(checkpoint[0]), "float32")
    source = np.full((1, 128, 128, 3), -0.8, dtype=np.float32)
    source[:, 32:96, 40:88] = 0.6
    latents = np.asarray(encoder.predict_on_batch(source))
    round_trip = converted.decoder.predict_on_batch(latents)
    _, context, unconditional, _ = variation_inputs()
    noise = np.random.default_rng(0).standard_normal(latents.shape, dtype=np.float32)
    varied = sample_latents(converted, noise, context, unconditional, 10, 7.5, variation=Variation(latents, 0.1))
    image = converted.decoder.predict_on_batch(varied)
    vae_error, moved = np.abs(round_trip - source).mean(), np.abs(image - round_trip).mean()
    assert 0 < moved < 0.3 * vae_error, (moved, vae_error)


def test_generates_from_the_checkpoint(converted, tmp_path):
    # Last, one image a batch: the U-Net's graph for a batch of 2 is traced by now.
    prompts = [ClassPrompt("chest", "Frontal chest X-ray", count=2)]
    generate_dataset(converted, prompts, XrayConfig(batch_size=1, steps=2), str(tmp_path), verbose=False)
    rows = dataset.write_index(str(tmp_path))
    assert [r["file_name"] for r in rows] == ["chest/chest_0000.png", "chest/chest_0001.png"]
    assert rows[0]["weight_source"].startswith("diffusers (") and rows[0]["numerics"] == "diffusers"
    assert "leading spacing, offset 1 (PNDMScheduler schedule)" in rows[0]["sampler"]


def test_lora_equals_diffusers_peft_and_saves_as_diffusers_does(checkpoint, converted, tmp_path):
    """Last: adapters change the shared U-Net. diffusers' LoRA file, loaded into KerasCV's U-Net, gives
    diffusers' output; saved back, it is the same file, tensor for tensor, name for name."""
    from safetensors import safe_open

    lora_path = checkpoint[3]
    adapters = add_adapters("diffusion_model", converted.diffusion_model, rank=4, groups=("attention",))
    load_adapters_into(adapters, lora_path)
    latent, context = unet_inputs(LORA_TIMESTEP)
    ours = converted.diffusion_model(
        {"latent": latent, "timestep_embedding": timestep_embedding(LORA_TIMESTEP, 2), "context": context}
    )
    reference = checkpoint[1]["unet_lora"]
    assert (
        np.abs(reference - checkpoint[1]["unet"][LORA_TIMESTEP]).max()
        > 100 * RELATIVE_TOLERANCE * np.abs(reference).max()
    )
    assert_round_off(ours, reference)
    saved = str(tmp_path / "ours.safetensors")
    save_adapters(saved, adapters, {"base_weights": "test"})
    with safe_open(lora_path, "numpy") as theirs, safe_open(saved, "numpy") as mine:
        assert sorted(mine.keys()) == sorted(theirs.keys()) and len(mine.keys()) == 2 * 128
        for name in theirs.keys():
            np.testing.assert_array_equal(mine.get_tensor(name), theirs.get_tensor(name))
