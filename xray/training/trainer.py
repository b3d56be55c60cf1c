"""The Keras model that fine-tuning fits: Stable Diffusion's noise-prediction loss on the U-Net,
and the optimizer it trains with."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

# reduce_per_replica: private Keras API, held by setup.py's keras pin (tests/test_private_apis.py).
from keras.src.backend.tensorflow.trainer import reduce_per_replica

from genlab.distribute import PrebuiltModel
from xray.training.optimizer import AdamW


class DiffusionFineTuner(PrebuiltModel):
    """Trains the U-Net (its adapters, or all of it) to predict the noise added to latents.

    Batches carry everything random, drawn by `UpdatePlan`: `x` (latents, or images when
    `image_encoder` is given), `signal` and `noise_level` (sqrt of alpha-bar and of
    1 - alpha-bar at each row's timestep), `timestep_embedding`, `noise`, `loss_weight` (each
    row's weight in the training loss), and `context` (text-encoder states) or, with
    `text_encoder`, `tokens` to encode. `evaluate` measures the plain, unweighted error.
    """

    def __init__(self, diffusion_model, image_encoder=None, text_encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.diffusion_model = diffusion_model
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def compile(self, optimizer, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        # The optimizer's slots are made here, not while `fit` traces the first step: a
        # tf.function that creates variables is traced a second time, and the first trace's
        # graph of the whole U-Net stays in memory.
        self.optimizer.build(self.trainable_variables)

    def make_train_function(self, force=False):
        if self._keras_functions_needed():
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = self._function_of_iterator(self.train_step)
        return self.train_function

    def make_test_function(self, force=False):
        if self._keras_functions_needed():
            return super().make_test_function(force)
        if self.test_function is None or force:
            self.test_function = self._function_of_iterator(self.test_step)
        return self.test_function

    def _keras_functions_needed(self):
        return self.run_eagerly or self.steps_per_execution != 1

    def _function_of_iterator(self, step):
        """`fit`'s or `evaluate`'s function of the data iterator: one batch read and `step` run,
        in one tf.function. Keras's own calls `step`'s tf.function from another that reads the
        batch, and TensorFlow then holds the U-Net's graph for both."""

        @tf.function(reduce_retracing=True)
        def step_on_iterator(iterator):
            data = iterator.get_next()
            # Every op of the step waits on the batch. Else, past the last batch of a dataset of
            # unknown length, counters that do not depend on it (the optimizer's iterations, a
            # mean's count) still advance, as they do under Keras's function.
            with tf.control_dependencies(tf.nest.flatten(data, expand_composites=True)):
                outputs = self.distribute_strategy.run(step, args=(data,))
            return reduce_per_replica(outputs, self.distribute_strategy, reduction="auto")

        def function(iterator):
            try:
                return step_on_iterator(iterator)
            except tf.errors.OutOfRangeError:  # Where Keras's returns an empty optional.
                raise StopIteration from None

        return function

    def noise_errors(self, data, training):
        """Each row's mean squared error between the noise added to its latents and the U-Net's prediction of it."""
        latents = data["x"] if self.image_encoder is None else self.image_encoder(data["x"], training=False)
        latents = tf.cast(latents, "float32")
        noisy = data["signal"][:, None, None, None] * latents + data["noise_level"][:, None, None, None] * data["noise"]
        if self.text_encoder is None:
            context = data["context"]
        else:
            positions = tf.broadcast_to(tf.range(tf.shape(data["tokens"])[1])[None], tf.shape(data["tokens"]))
            context = self.text_encoder({"tokens": data["tokens"], "positions": positions}, training=training)
        predicted = self.diffusion_model(
            {"latent": noisy, "timestep_embedding": data["timestep_embedding"], "context": context}, training=training
        )
        return tf.reduce_mean(tf.square(tf.cast(predicted, "float32") - data["noise"]), axis=[1, 2, 3])

    def train_step(self, data):
        with tf.GradientTape() as tape:
            errors = self.noise_errors(data, training=True)
            loss = tf.reduce_mean(data["loss_weight"] * errors)
            scaled_loss = self.optimizer.scale_loss(loss)  # Loss scaling under mixed_float16; else the loss.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # The norm before the optimizer clips it (its global_clipnorm), of this batch's unscaled gradients.
        gradient_norm = tf.linalg.global_norm(gradients) / self.optimizer.scale_loss(tf.constant(1.0))
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result(), "step_loss": loss, "gradient_norm": gradient_norm}

    @contextlib.contextmanager
    def averaged_weights(self):
        """Inside the block the trainable weights are the optimizer's moving averages (Keras's
        EMA, `finalize_variable_values`); after it, the trained weights again. Without an EMA,
        the trained weights throughout."""
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # Inside a LossScaleOptimizer.
        if not optimizer.use_ema:
            yield
            return
        trained = [np.asarray(variable) for variable in self.trainable_variables]
        optimizer.finalize_variable_values(self.trainable_variables)
        try:
            yield
        finally:
            for variable, value in zip(self.trainable_variables, trained):
                variable.assign(value)

    def test_step(self, data):
        self.loss_tracker.update_state(tf.reduce_mean(self.noise_errors(data, training=False)))
        return {"loss": self.loss_tracker.result()}


class ScheduleOfUpdates(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` counted in updates for an optimizer that accumulates `batches_per_update`
    batches: Keras calls a schedule with the batches seen, so a schedule of updates would warm up
    and decay that many times too fast."""

    def __init__(self, schedule, batches_per_update):
        self.schedule, self.batches_per_update = schedule, batches_per_update

    def __call__(self, step):
        return self.schedule(step // self.batches_per_update)


def training_optimizer(config):
    """AdamW with `config`'s learning rate, warmed up and then cosine-decayed, its gradient
    accumulation and its clipping (Keras's global_clipnorm: of the accumulated gradients, as
    diffusers' scripts clip after accumulating; under several replicas Keras clips each one's
    before summing them) and its moving average of the weights. Keras's average takes a step
    every batch, so with accumulation its momentum is the decay's N-th root: an update's N
    batches move it about as far as one step of `config.ema_decay`."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, config.max_steps - config.warmup_steps),
        alpha=0.1,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
    )
    accumulation = config.gradient_accumulation
    ema = {"use_ema": True, "ema_momentum": config.ema_decay ** (1 / accumulation)} if config.ema_decay else {}
    return AdamW(
        ScheduleOfUpdates(schedule, accumulation) if accumulation > 1 else schedule,
        weight_decay=1e-2,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
        global_clipnorm=config.max_grad_norm or None,
        **ema,
    )
