"""Predictions in one batch shape."""

import numpy as np


def predict_in_one_shape(model, inputs, batch_size, verbose=0):
    """`model.predict(inputs)` with every batch `batch_size` rows: the last one is padded with
    zeros, and the padding's rows are left out of the result. Keras traces a predict function
    again for each new batch shape; this way it traces once per model, whatever the count.

    `inputs` is an array or a list of arrays with the same number of rows; the result has the
    structure `model.predict` gives (an array, or a list or tuple of arrays).
    """
    arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    count = len(arrays[0])
    pad = -count % batch_size
    padded = [np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a for a in arrays]
    outputs = model.predict(
        padded if isinstance(inputs, (list, tuple)) else padded[0], batch_size=batch_size, verbose=verbose
    )
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(output[:count] for output in outputs)
    return outputs[:count]
