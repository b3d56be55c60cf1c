"""Numeric checks: bit-exact digests of arrays and networks, outputs with gradients, closeness."""

import hashlib

import numpy as np


def array_digest(array):
    """The sha256 of an array's bytes: equal digests mean equal values, bit for bit."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def fingerprint(network):
    """One digest per weight of a network: equal lists mean equal weights, bit for bit."""
    return [array_digest(w.numpy()) for w in network.weights]


def output_and_gradients(function, tensors):
    """The output and the gradients of a weighted sum of it (every output element matters differently)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(tensors)
        output = function(*tensors)
        loss = tf.reduce_sum(output * tf.reshape(tf.sin(tf.range(tf.size(output), dtype=tf.float32)), tf.shape(output)))
    return [output] + tape.gradient(loss, tensors)


def ancestry():
    """A function giving the ops an op depends on in its graph (not the op itself), through
    inputs and control inputs; it remembers what it found."""
    known = {}

    def ancestors(op):
        if op not in known:
            seen, stack = set(), [op]
            while stack:
                current = stack.pop()
                for parent in [t.op for t in current.inputs] + list(current.control_inputs):
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            known[op] = seen
        return known[op]

    return ancestors


def assert_close(got, expected, rtol=1e-5, atol=1e-5):
    """Each of two lists of arrays equal within the tolerances; a failure names the item."""
    for i, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=f"item {i}")
