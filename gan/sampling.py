"""Load a trained generator and draw digits from it: the API the sorter and notebooks use."""

import numpy as np

from gan.model import IMAGE_SHAPE, is_conditional
from genlab.batches import predict_in_one_shape
from genlab.errors import UserError
from genlab.files import load_model_file
from genlab.mnist import NUM_CLASSES
from genlab.noise import gaussian_noise


def load_generator(path):
    """Loads a generator saved by `gan.train` (`generator.keras`), checking it is one."""
    model = load_model_file(path, "generator", "train one with genlab-train-gan, or pass --generator")
    if tuple(model.outputs[0].shape[1:]) != IMAGE_SHAPE or len(model.inputs) not in (1, 2):
        raise UserError(
            f"{path!r} is not a GAN generator: it maps {[i.shape for i in model.inputs]} to {model.outputs[0].shape}"
        )
    return model


def sample_digits(generator, count, seed=0, labels=None, batch_size=500):
    """Generates `count` images in [-1, 1], shape (count, 28, 28, 1).

    Conditional generators take `labels` (count,) or, if None, cycle through 0..9 so every
    digit is asked for equally; the labels used are returned (None when unconditional).
    """
    noise_dim = generator.inputs[0].shape[-1]
    noise = gaussian_noise(seed, (count, noise_dim))
    if is_conditional(generator):
        labels = np.arange(count) % NUM_CLASSES if labels is None else np.asarray(labels)
        labels = labels.astype("int32")
        images = predict_in_one_shape(generator, [noise, labels], batch_size)
    else:
        labels = None
        images = predict_in_one_shape(generator, noise, batch_size)
    return images, labels
