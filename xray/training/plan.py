"""Every random draw of fine-tuning's updates, as a function of the seed and the batch's number."""

import numpy as np
import tensorflow as tf

from xray.sd.sampler import timestep_embedding
from xray.training.augment import Augmentation, augment

PROBE_BATCHES = 4  # Fixed batches (images, timesteps, noise) the loss is measured on at every checkpoint.
PROBE_FIRST = 1 << 40  # Their numbers in the update plan: far beyond any training batch, so never trained on as such.


def min_snr_weights(alphas_cumprod, timesteps, gamma):
    """Min-SNR-gamma weights of epsilon-prediction losses (Hang et al. 2023, as diffusers' training
    scripts compute them): min(SNR(t), gamma) / SNR(t), with SNR = alpha-bar / (1 - alpha-bar).
    `gamma` 0 gives every timestep weight 1."""
    alphas = np.asarray(alphas_cumprod, dtype=np.float64)[timesteps]
    snr = alphas / (1.0 - alphas)
    return (np.minimum(snr, gamma) / snr if gamma else np.ones_like(snr)).astype(np.float32)


class UpdatePlan:
    """Each training batch, as a function of the seed and the batch's number alone.

    Images are visited in a fresh random order each pass over the data; timesteps, noise, caption
    dropout and the noise offset are drawn per batch from its own generator, and with
    `augmentation` (when `x` holds images, not latents) each training batch's images are
    augmented from another. Probe batches are not augmented: their loss compares across settings.
    """

    def __init__(self, x, caption_ids, captions, schedule, config, contexts=None, tokens=None, augmentation=None):
        self.x, self.caption_ids, self.captions = x, caption_ids, captions
        self.augmentation = augmentation or Augmentation()
        self.alphas = np.asarray(schedule.alphas_cumprod, dtype=np.float64)
        self.config = config
        self.contexts, self.tokens = contexts, tokens  # Per caption; the last one is "".
        self.latent_shape = (config.image_size // 8, config.image_size // 8, 4)

    def batch(self, number):
        config = self.config
        size = config.batch_size
        passes = np.random.default_rng([config.seed, 0, (number * size) // len(self.x)])
        order = passes.permutation(len(self.x))
        first = (number * size) % len(self.x)
        index = np.take(order, range(first, first + size), mode="wrap")  # A batch that runs past the end wraps.
        rng = np.random.default_rng([config.seed, 1, number])
        timesteps = rng.integers(0, len(self.alphas), size)
        caption = np.where(rng.random(size) < config.caption_dropout, len(self.captions) - 1, self.caption_ids[index])
        noise = rng.standard_normal((size, *self.latent_shape), dtype=np.float32)
        if config.noise_offset:  # Drawn last, so the draws before it are those of a run without it.
            noise += np.float32(config.noise_offset) * rng.standard_normal(
                (size, 1, 1, self.latent_shape[-1]), dtype=np.float32
            )
        x = self.x[index]
        if self.augmentation.on and number < PROBE_FIRST:
            x = augment(x, self.augmentation, np.random.default_rng([config.seed, 2, number]))
        batch = {
            "x": x,
            "signal": np.sqrt(self.alphas[timesteps]).astype(np.float32),
            "noise_level": np.sqrt(1.0 - self.alphas[timesteps]).astype(np.float32),
            "timestep_embedding": np.concatenate([timestep_embedding(t, 1) for t in timesteps]),
            "noise": noise,
            "loss_weight": min_snr_weights(self.alphas, timesteps, config.snr_gamma),
        }
        if self.tokens is not None:
            batch["tokens"] = self.tokens[caption]
        else:
            batch["context"] = self.contexts[caption]
        return batch

    def dataset(self, first, count):
        """Batches number `first` to `first + count - 1`, as a tf.data pipeline."""
        example = self.batch(0)
        signature = {
            key: tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype)) for key, value in example.items()
        }
        generator = lambda: (self.batch(number) for number in range(first, first + count))  # noqa: E731
        dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(count)).prefetch(2)
