"""The layers fine-tuning runs (xray.training.kernels.attention) compute KerasCV's CrossAttention and GEGLU and
their gradients, and in a graph the backward pass really computes again what it does not keep."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import GEGLU, CrossAttention, ResBlock
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

import xray.training.kernels.attention
from xray.sd.attention import merge_heads
from xray.training.kernels import use_training_kernels
from xray.training.kernels.attention import attention, geglu

from helpers.numerics import ancestry, assert_close, output_and_gradients


def softmax_attention(q, k, v, scale):
    return merge_heads(tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale), v))


def test_chunks_give_softmax_attention_and_its_gradients():
    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.standard_normal((2, 3, n, 8)) * 2, tf.float32) for n in (10, 7, 7))
    expected = output_and_gradients(lambda *t: softmax_attention(*t, 0.35), [q, k, v])
    for chunk in (4, 10, 64):  # Uneven, exact, and more than the 10 queries.
        assert_close(output_and_gradients(lambda *t: attention(*t, 0.35, chunk=chunk), [q, k, v]), expected)


def test_bfloat16_inputs_multiply_in_bfloat16_and_give_softmax_attention_to_its_round_off():
    rng = np.random.default_rng(2)
    q, k, v = (tf.cast(rng.standard_normal((2, 3, n, 8)) * 2, tf.bfloat16) for n in (10, 7, 7))
    as_float = lambda tensors: [tf.cast(t, tf.float32) for t in tensors]  # noqa: E731
    expected = output_and_gradients(lambda *t: softmax_attention(*t, 0.35), as_float([q, k, v]))
    got = tf.function(
        lambda: output_and_gradients(lambda *t: tf.cast(attention(*t, 0.35, chunk=4), tf.float32), [q, k, v])
    )
    for i, (a, b) in enumerate(zip(as_float(got()), expected)):
        assert a.dtype == tf.float32 and np.abs(a - b).max() < 0.03 * np.abs(b).max(), i  # bfloat16 keeps 8 bits.
    products = [op for op in got.get_concrete_function().graph.get_operations() if op.type == "BatchMatMulV2"]
    assert products and all(op.get_attr("T") == tf.bfloat16 for op in products)


def keras_cvs_geglu(h, units):
    layer = GEGLU(units)
    layer.dense = lambda inputs: inputs  # The formula after the projection.
    return layer.call(h)


def test_geglu_gives_keras_cvs_formula_and_its_gradients():
    h = tf.constant(np.random.default_rng(3).standard_normal((2, 5, 12)) * 3, tf.float32)
    expected = output_and_gradients(lambda h: keras_cvs_geglu(h, 6), [h])
    got = output_and_gradients(lambda h: geglu(h, 6), [h])
    np.testing.assert_array_equal(got[0], expected[0])  # The same ops in the same order.
    assert_close(got[1:], expected[1:])


@pytest.mark.parametrize("recompute_projections", [False, True])
def test_a_network_computes_what_keras_cvs_layers_do_in_a_graph(monkeypatch, recompute_projections):
    if recompute_projections:  # As the high-resolution GEGLUs do: their kernels' gradients too.
        monkeypatch.setattr(xray.training.kernels.attention, "RECOMPUTE_BYTES", 0)
    x, context = keras.Input((12, 16)), keras.Input((5, 16))
    attended = CrossAttention(num_heads=2, head_size=8)(x, context=context)
    network = keras.Model([x, context], GEGLU(16)(attended))
    rng = np.random.default_rng(1)
    inputs = [tf.constant(rng.standard_normal((2, n, 16)), tf.float32) for n in (12, 5)]
    step = lambda: output_and_gradients(lambda *w: network(inputs), [w.value for w in network.trainable_weights])  # noqa: E731
    keras_cvs, chunked = tf.function(step), tf.function(step)
    expected = keras_cvs()
    use_training_kernels(network)
    assert_close(chunked(), expected)
    op_types = lambda f: {op.type for op in f.get_concrete_function().graph.get_operations()}  # noqa: E731
    assert "Softmax" in op_types(keras_cvs) and "Softmax" not in op_types(chunked)  # The swap took.


def test_the_backward_pass_keeps_the_attention_output_once():
    """The out projection's adapter keeps its input, the attention's output with the heads
    merged; the attention's gradient reads that tensor, not a copy in the heads' layout."""
    x = keras.Input((12, 12))
    layer = CrossAttention(num_heads=2, head_size=8)  # 12 wide in, 16 across the heads.
    network = keras.Model(x, layer(x))
    layer.out_proj.enable_lora(2)
    use_training_kernels(network)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = network(x)
        return y, tape.gradient(y, [x] + network.trainable_weights)

    graph = step.get_concrete_function(tf.TensorSpec((1, 12, 12))).graph
    ancestors = ancestry()
    forward, backward = ancestors(graph.outputs[0].op), set().union(*(ancestors(t.op) for t in graph.outputs[1:]))
    kept = {t.name: t for op in backward - forward for t in op.inputs if t.op in forward}.values()
    assert sum(t.shape.as_list() == [1, 2, 12, 8] for t in kept) == 3  # q, k and v; the output as (1, 12, 16).


def test_a_res_block_computes_what_keras_cvs_does_each_swish_in_its_normalization():
    x, embedding = keras.Input((4, 4, 32)), keras.Input((8,))
    network = keras.Model([x, embedding], ResBlock(64)([x, embedding]))  # 32 -> 64 channels: a residual projection.
    rng = np.random.default_rng(5)
    inputs = [tf.constant(rng.standard_normal(shape) * 2 + 1, tf.float32) for shape in ((2, 4, 4, 32), (2, 8))]
    step = lambda: output_and_gradients(lambda *w: network(inputs), [w.value for w in network.trainable_weights])  # noqa: E731
    keras_cvs, fused = tf.function(step), tf.function(step)
    expected = keras_cvs()
    use_training_kernels(network)
    assert_close(fused(), expected)
    sigmoids = lambda f: sum(op.type == "Sigmoid" for op in f.get_concrete_function().graph.get_operations())  # noqa: E731
    assert sigmoids(keras_cvs) > sigmoids(fused) == 1  # Only the embedding's swish is left outside the normalizations.


def optimized_graph(function, *specs):
    """The concrete function's graph as Grappler rewrites it before running it."""
    graph = function.get_concrete_function(*specs).graph
    for output in graph.outputs:
        graph.add_to_collection("train_op", output)  # What Grappler must keep.
    meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    return graph, tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)


def test_grappler_keeps_the_backward_passes_recomputation():
    """Recomputed probabilities and GELUs are the forward pass's ops again on the same inputs:
    unless they wait on the gradient, Grappler merges each pair, and the forward's are kept."""
    spec = tf.TensorSpec((1, 2, 48, 8))

    @tf.function
    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = attention(q, k, v, 0.3, chunk=16)  # (1, 48, 16)
            loss = tf.reduce_sum(geglu(out, 8) * tf.sin(q[:, 0]))
        return tape.gradient(loss, [q, k, v])

    graph, optimized = optimized_graph(step, spec, spec, spec)
    count = lambda op_type, nodes: sum(node.op == op_type for node in nodes)  # noqa: E731
    traced = [op.node_def for op in graph.get_operations()]
    for op_type in ("BatchMatMulV2", "Tanh"):  # The recomputed scores q k^T are products.
        assert count(op_type, optimized.node) == count(op_type, traced) > 0, op_type


def test_large_geglu_projections_are_computed_again_in_the_backward_pass(monkeypatch):
    """What such a GEGLU keeps is its input, not its projection's output (eight times as wide):
    the backward pass has the projection's product once more, and Grappler keeps it."""
    x = keras.Input((6, 4))
    network = keras.Model(x, GEGLU(4)(x))
    network.trainable = False  # As the U-Net's are, but for adapters.
    spec = tf.TensorSpec((1, 6, 4))

    def products(recompute_bytes):
        monkeypatch.setattr(xray.training.kernels.attention, "RECOMPUTE_BYTES", recompute_bytes)
        use_training_kernels(network)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(network(x)))
            return tape.gradient(loss, x)

        _, optimized = optimized_graph(step, spec)
        # MatMul, or BatchMatMulV2 where Keras multiplies a 3-D input without flattening it (3.10).
        return sum("MatMul" in node.op for node in optimized.node)

    assert products(0) == products(2**30) + 1 > 1


def softmax_calls(operations):
    """The calls of the XLA function (`xray.sd.attention.exponentials`) that exponentiates a chunk's scores."""
    return [op for op in operations if op.type.endswith("PartitionedCall") and "exponentials" in op.get_attr("f").name]


def test_each_chunk_waits_on_the_one_before():
    """So that the executor, which runs whatever is ready, holds one chunk's matrices at a time."""
    chunk, tokens, chunks = 8, 48, 6
    spec = tf.TensorSpec((1, 2, tokens, 8))

    @tf.function
    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(tf.square(attention(q, k, v, 0.3, chunk=chunk)))  # Its gradient needs every chunk.
        return tape.gradient(loss, [q, k, v])

    operations = step.get_concrete_function(spec, spec, spec).graph.get_operations()
    ancestors = ancestry()

    exps = softmax_calls(operations)  # Each chunk's probabilities, forward and backward.
    assert len(exps) == 2 * chunks
    order = sorted(exps, key=lambda op: len(ancestors(op)))
    assert all(earlier in ancestors(later) for earlier, later in zip(order, order[1:]))  # One chain.

    # Two (chunk x tokens) matrices can be alive at once unless every reader of one runs before
    # the other is made. Those that can fall into one group per chunk and pass, never more.
    matrices = [t for op in operations for t in op.outputs if t.shape.rank == 4 and t.shape[-2:] == (chunk, tokens)]

    def alive_together(a, b):
        gone_before = lambda x, y: all(reader in ancestors(y.op) for reader in x.consumers())  # noqa: E731
        return not gone_before(a, b) and not gone_before(b, a)

    groups = []  # Lists of indices into `matrices` (tensors do not compare with ==).
    for i, matrix in enumerate(matrices):
        joined = [g for g in groups if any(alive_together(matrix, matrices[j]) for j in g)]
        groups = [g for g in groups if g not in joined] + [[i] + sum(joined, [])]
    assert len(groups) == 2 * chunks
