"""Fine-tuning Stable Diffusion on a user's images: data layouts, the objective, resume, NaN, bad input.

The training loop does not depend on what the networks know: it runs here on the stand-in
networks (whole-U-Net mode, since LoRA needs KerasCV's own layers). LoRA on KerasCV's real
networks is in xray/training/test_adapters.py; the programs end to end, generation with the adapters,
and a killed run resumed on the real networks, in scripts/test_finetune_xrays.py.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from genlab.errors import UserError
from genlab.files import read_csv, write_csv
from xray.config import FinetuneConfig
from xray.formats.keras_cv_files import KERAS_CV_FILES
from xray.sd.sampler import NoiseSchedule
from xray.training.examples import read_training_images, training_examples
from xray.training.finetune import finetune, write_merged
from xray.training.plan import UpdatePlan
from xray.training.trainer import DiffusionFineTuner

from helpers.image_folders import make_shapes_folder
from helpers.numerics import fingerprint
from helpers.programs import kill_when, run_program, start_standin
from helpers.standin_sd import FINETUNE_KILL_CONFIG, WIDTH, diffusion_model, image_encoder, standin_models

TRAINS = pytest.mark.slow  # Trains (stand-in networks, but TensorFlow's graphs still take seconds to trace).
SMALL = FinetuneConfig(
    image_size=128,
    full_unet=True,
    max_steps=20,
    checkpoint_every=5,
    sample_every=10,
    sample_steps=2,
    warmup_steps=2,
    learning_rate=1e-2,
    batch_size=2,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("shapes"), per_class=4, size=64)


def test_class_folders_are_captioned_by_template_or_prompts(shapes):
    examples = training_examples(shapes, "a radiograph of a {class_name}")
    assert len(examples) == 12 and examples[0].caption == "a radiograph of a circle"
    prompts = {"circle": "round", "square": "boxy", "triangle": "pointy"}
    assert {e.caption for e in training_examples(shapes, class_prompts=prompts)} == {"round", "boxy", "pointy"}
    with pytest.raises(UserError, match="class folder 'triangle' has no prompt"):
        training_examples(shapes, class_prompts={"circle": "round", "square": "boxy"})


def test_metadata_csv_captions_and_missing_ones(tmp_path, shapes):
    folder = tmp_path / "imagefolder"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("L", (40, 30), 128).save(folder / name)
    write_csv(
        folder / "metadata.csv",
        [{"file_name": "a.png", "text": "chest, PA view"}, {"file_name": "b.png", "text": "knee"}],
    )
    assert [e.caption for e in training_examples(str(folder))] == ["chest, PA view", "knee"]
    write_csv(folder / "metadata.csv", [{"file_name": "a.png", "text": "chest"}, {"file_name": "b.png", "text": " "}])
    with pytest.raises(UserError, match="line 3: b.png has no caption"):
        training_examples(str(folder))


def test_16_bit_and_rgb_files_are_read_but_not_mixed(tmp_path):
    folder = tmp_path / "mixed" / "chest"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((50, 70), 3000, dtype=np.uint16)).save(folder / "a16.png")
    examples = training_examples(str(tmp_path / "mixed"))
    assert read_training_images(examples, 32).shape == (1, 32, 32, 3)
    Image.new("RGB", (50, 50), (10, 200, 30)).save(folder / "b_rgb.jpg")
    with pytest.raises(UserError, match="b_rgb.jpg is colour but .*a16.png is grayscale: mixed channel counts"):
        read_training_images(training_examples(str(tmp_path / "mixed")), 32)


def test_every_batch_is_a_function_of_the_seed_and_its_number(shapes, clip_tokenizer):
    examples = training_examples(shapes)
    x = np.arange(len(examples), dtype=np.float32)[:, None, None, None] * np.ones((1, 16, 16, 4), np.float32)
    captions = list(dict.fromkeys(e.caption for e in examples)) + [""]
    ids = np.array([captions.index(e.caption) for e in examples])
    contexts = np.random.default_rng(0).normal(size=(len(captions), 77, 8)).astype(np.float32)
    plan = UpdatePlan(x, ids, captions, standin_models(clip_tokenizer).schedule, SMALL, contexts=contexts)
    first, again = plan.batch(7), plan.batch(7)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["noise"], plan.batch(8)["noise"])
    seen = np.concatenate([plan.batch(n)["x"][:, 0, 0, 0] for n in range(6)])  # 6 batches of 2 = one pass over 12.
    assert sorted(seen) == list(range(12))


def latent_plan(batch_size=1):
    """Batches of four cached 64 px latents, one caption and "", for the stand-in U-Net."""
    latents = np.random.default_rng(0).standard_normal((4, 8, 8, 4), dtype=np.float32)
    return UpdatePlan(
        latents,
        np.zeros(4, int),
        ["a circle", ""],
        NoiseSchedule.keras_cv(),
        FinetuneConfig(image_size=64, batch_size=batch_size),
        contexts=np.zeros((2, 77, WIDTH), np.float32),
    )


def test_fit_traces_the_training_step_once_in_the_function_that_reads_the_batch():
    # Were the optimizer's slots made while tracing, tf.function would trace the step again and
    # keep both graphs: with the real U-Net, a second graph of the whole network in memory. And
    # were the step a tf.function of its own, called from the one that reads the batch (as in
    # Keras's trainer), TensorFlow would hold the step's graph in both.
    model = DiffusionFineTuner(diffusion_model(64))
    graphs, step = [], model.train_step
    model.train_step = lambda data: (graphs.append(tf.compat.v1.get_default_graph()), step(data))[1]
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    model.fit(latent_plan().dataset(0, 3), epochs=1, verbose=0)
    assert len(graphs) == 1 and int(model.optimizer.iterations) == 3
    assert "IteratorGetNext" in {op.type for op in graphs[0].get_operations()}


def test_fit_and_evaluate_end_where_a_dataset_of_unknown_length_does():
    model = DiffusionFineTuner(diffusion_model(64))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    plan = latent_plan()
    signature = {
        key: tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype)) for key, value in plan.batch(0).items()
    }

    def batches():
        return tf.data.Dataset.from_generator(
            lambda: (plan.batch(number) for number in range(5)), output_signature=signature
        )

    assert batches().cardinality() == tf.data.UNKNOWN_CARDINALITY
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs=None: steps.append(batch))
    history = model.fit(batches(), epochs=2, verbose=0, callbacks=[counter])
    assert steps == [0, 1, 2, 3, 4] * 2 and len(history.history["loss"]) == 2
    assert int(model.optimizer.iterations) == 10  # Not advanced by the read past the end.
    losses = [
        np.mean(model.noise_errors(tf.nest.map_structure(tf.constant, plan.batch(number)), training=False))
        for number in range(5)
    ]
    expected = float(np.mean(losses))
    # Five batches, not six.
    assert np.isclose(model.evaluate(batches(), verbose=0, return_dict=True)["loss"], expected, rtol=1e-5)


def test_fit_under_a_mirrored_strategy_takes_the_same_steps():
    plan = latent_plan(batch_size=2)
    weights, losses = None, []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["CPU:0"])):
        with strategy.scope():
            model = DiffusionFineTuner(diffusion_model(64))
            model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        weights = weights or model.get_weights()
        model.set_weights(weights)
        losses.append(model.fit(plan.dataset(0, 3), epochs=1, verbose=0).history["step_loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@TRAINS
def test_training_lowers_the_loss_and_writes_its_outputs(tmp_path, shapes, clip_tokenizer):
    models, encoder = standin_models(clip_tokenizer), image_encoder()
    result = finetune(models, encoder, training_examples(shapes), str(tmp_path / "run"), SMALL, verbose=0)
    assert result.steps == 20 and result.last_probe_loss < 0.8 * result.first_probe_loss
    assert sorted(os.listdir(tmp_path / "run")) == [
        "checkpoints",
        "config.json",
        "history.csv",
        "loss_curve.png",
        "probe_loss.csv",
        "samples",
        "samples_progress.png",
        "tensorboard",
        "unet.weights.h5",
    ]
    assert sorted(os.listdir(tmp_path / "run" / "samples")) == ["step_000000.png", "step_000010.png", "step_000020.png"]
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "probe_loss.csv")] == [0, 5, 10, 15, 20]
    history = read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == 20 and all(0 < float(r["gradient_norm"]) < np.inf for r in history)

    # --merge with the whole U-Net trained: its file holds the trained weights, not the start's.
    assert result.adapters == {}
    merged = write_merged(str(tmp_path / "merged"), models, encoder, result.adapters, "random")
    untrained = standin_models(clip_tokenizer).diffusion_model  # The same seed: the weights training started from.
    before = fingerprint(untrained)
    untrained.load_weights(os.path.join(merged, KERAS_CV_FILES["diffusion_model"][0]))
    assert fingerprint(untrained) == fingerprint(models.diffusion_model) != before


@TRAINS
def test_finetune_in_a_mirrored_strategys_scope_trains_as_without(tmp_path, shapes, clip_tokenizer):
    # As genlab-xray-finetune --strategy=mirrored runs it: networks built and `finetune` run in the scope.
    config = FinetuneConfig(**{**SMALL.__dict__, "max_steps": 5, "sample_every": 0})
    losses = []
    for name, strategy in (
        ("default", tf.distribute.get_strategy()),
        ("mirrored", tf.distribute.MirroredStrategy(["CPU:0"])),
    ):
        with strategy.scope():
            finetune(
                standin_models(clip_tokenizer),
                image_encoder(),
                training_examples(shapes),
                str(tmp_path / name),
                config,
                verbose=0,
            )
        losses.append([float(row["loss"]) for row in read_csv(tmp_path / name / "history.csv")])
    assert len(losses[0]) == 5
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@TRAINS
def test_gradient_accumulation_counts_updates_not_batches_and_samples_draw_the_validation_prompts(
    tmp_path, shapes, clip_tokenizer
):
    config = FinetuneConfig(**{**SMALL.__dict__, "max_steps": 5, "sample_every": 5, "gradient_accumulation": 2})
    validation = [("Knee X-ray", 7), ("Hand X-ray", 9), ("Knee X-ray", 8)]
    result = finetune(
        standin_models(clip_tokenizer),
        image_encoder(),
        training_examples(shapes),
        str(tmp_path),
        config,
        validation=validation,
        verbose=0,
    )
    assert result.steps == 5 and len(read_csv(tmp_path / "history.csv")) == 10
    names = sorted(os.listdir(tmp_path / "samples"))
    assert names == ["step_000000.png", "step_000010.png"]  # Files count batches, as history.csv does.
    for name in names:  # A row of the three validation prompts, not the classes'.
        with Image.open(tmp_path / "samples" / name) as strip:
            assert strip.size == (3 * 128, 128)


@TRAINS
def test_a_killed_run_resumes_to_where_an_uninterrupted_run_ends(tmp_path, shapes, clip_bpe_path, clip_tokenizer):
    killed = tmp_path / "killed"
    process = start_standin("finetune", killed, clip_bpe_path, shapes)
    kill_when(process, (killed / "checkpoints" / "step_000010.npz").exists, timeout=120)
    done = len(read_csv(killed / "history.csv"))
    assert 10 <= done < 60, "the kill should land mid-run"

    examples = training_examples(shapes)
    resumed = finetune(
        standin_models(clip_tokenizer), image_encoder(), examples, str(killed), FINETUNE_KILL_CONFIG, verbose=0
    )
    uninterrupted = finetune(
        standin_models(clip_tokenizer),
        image_encoder(),
        examples,
        str(tmp_path / "whole"),
        FINETUNE_KILL_CONFIG,
        verbose=0,
    )
    assert resumed.steps == uninterrupted.steps == 60
    for name in ("unet.weights.h5", "unet_ema.weights.h5"):  # The weights and their moving average.
        trained = [standin_models(clip_tokenizer).diffusion_model for _ in range(2)]
        trained[0].load_weights(killed / name)
        trained[1].load_weights(tmp_path / "whole" / name)
        for a, b in zip(trained[0].weights, trained[1].weights):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert read_csv(killed / "probe_loss.csv") == read_csv(tmp_path / "whole" / "probe_loss.csv")
    losses_and_norms = [
        [(float(r["loss"]), float(r["gradient_norm"])) for r in read_csv(run / "history.csv")]
        for run in (killed, tmp_path / "whole")
    ]
    np.testing.assert_allclose(*losses_and_norms, rtol=1e-4)


@TRAINS
def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, shapes, clip_tokenizer):
    examples = training_examples(shapes)
    good = FinetuneConfig(**{**SMALL.__dict__, "max_steps": 5, "sample_every": 0})
    finetune(standin_models(clip_tokenizer), image_encoder(), examples, str(tmp_path), good, verbose=0)
    weights = (tmp_path / "unet.weights.h5").read_bytes()
    diverging = FinetuneConfig(**{**good.__dict__, "max_steps": 20, "learning_rate": 1e30})
    with pytest.raises(UserError, match="NaN or infinite.*last good checkpoint .5 updates.*lower --learning_rate"):
        finetune(standin_models(clip_tokenizer), image_encoder(), examples, str(tmp_path), diverging, verbose=0)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000005.npz"]
    assert (tmp_path / "unet.weights.h5").read_bytes() == weights


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "has no class sub-folders"),
        (lambda root: (root / "chest").mkdir(parents=True), "holds no PNG or JPEG images"),
        (
            lambda root: [(root / "chest").mkdir(parents=True), (root / "chest" / "x.png").write_bytes(b"broken")],
            "x.png is not a readable PNG or JPEG image",
        ),
    ],
)
def test_bad_data_gets_one_line_and_leaves_nothing(tmp_path, make, message):
    data, out = tmp_path / "data", tmp_path / "out"
    make(data)
    result = run_program(
        "scripts.finetune_xrays",
        [
            f"--data_dir={data}",
            f"--output_dir={out}",
            "--weights=random",
            "--image_size=128",
            "--max_steps=2",
            "--checkpoint_every=1",
        ],
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_bad_validation_prompts_file_gets_one_line_and_leaves_nothing(tmp_path, shapes):
    prompts, out = tmp_path / "validation.yaml", tmp_path / "out"
    prompts.write_text("- prompt: Knee X-ray\n  seed: -1\n")
    args = [f"--data_dir={shapes}", f"--output_dir={out}", "--weights=random", f"--validation_prompts={prompts}"]
    result = run_program("scripts.finetune_xrays", args)
    assert result.returncode == 2 and "entry 1: 'seed' must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_merging_refuses_networks_whose_weights_are_rounded(tmp_path, clip_tokenizer):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("bfloat16")  # What build_network(frozen=True) stores under mixed_bfloat16.
    try:
        encoder = image_encoder()
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(ValueError, match="frozen=False"):
        write_merged(str(tmp_path / "merged"), standin_models(clip_tokenizer), encoder, {}, "random")
    assert not (tmp_path / "merged").exists()
