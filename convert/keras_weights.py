"""Carry an ONNX graph's convolution weights back into the Keras model it was exported from, batch
normalization folded in, so that TFLite's converter quantizes the same rounded weights as ONNX."""

import numpy as np


def leaf_layers(model):
    """Every layer of ``model``, descending into nested models (the Xception base)."""
    for layer in model.layers:
        yield from leaf_layers(layer) if hasattr(layer, "layers") else (layer,)


def _batchnorms(model) -> dict:
    """Layer name -> the BatchNormalization layer that reads its output."""
    import keras

    return {bn._inbound_nodes[0].parent_nodes[0].operation.name: bn for bn in leaf_layers(model)
            if isinstance(bn, keras.layers.BatchNormalization)}


def _scale(bn, out: int) -> np.ndarray:
    """The per-channel factor a BatchNormalization multiplies by (ones without one)."""
    if bn is None:
        return np.ones(out)
    return bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)


def folded(model) -> list:
    """(weight in ONNX's OIHW layout with batch normalization folded in, setter) for each convolution of
    ``model``: a depthwise filter and a pointwise one per SeparableConv2D. The setter takes new OIHW
    weights and bias and writes them so that folding gives them back."""
    import keras

    bns, out = _batchnorms(model), []
    for layer in leaf_layers(model):
        bn = bns.get(layer.name)
        if isinstance(layer, keras.layers.SeparableConv2D):
            out.append((layer.depthwise_kernel.numpy().transpose(2, 3, 0, 1),
                        lambda w, b, layer=layer: layer.depthwise_kernel.assign(w.transpose(2, 3, 0, 1))))
            kernel = layer.pointwise_kernel
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel
        else:
            continue
        w = kernel.numpy().transpose(3, 2, 0, 1)
        out.append((w * _scale(bn, len(w))[:, None, None, None],
                    lambda w, b, layer=layer, kernel=kernel, bn=bn: _set(layer, kernel, bn, w, b)))
    return out


def _set(layer, kernel, bn, w: np.ndarray, b: np.ndarray | None):
    """Write OIHW ``w`` and bias ``b`` into ``kernel`` and the batch normalization after it (made the identity
    but for its shift: gamma 1, variance 1 - epsilon, mean 0, beta the bias)."""
    kernel.assign(w.transpose(2, 3, 1, 0))
    b = np.zeros(len(w)) if b is None else b
    if bn is None:
        layer.bias.assign(b)
        return
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(np.zeros(len(w)))
    for var, value in ((bn.gamma, 1), (bn.moving_variance, 1 - bn.epsilon), (bn.moving_mean, 0), (bn.beta, b)):
        var.assign(np.broadcast_to(np.asarray(value, np.float32), var.shape))


def carry(model, original, changed) -> int:
    """Write ``changed``'s Conv weights and biases into the Keras ``model``, each Conv found by its weight in
    ``original`` (the same ONNX graph before the change) matching a folded Keras weight; return how many."""
    from onnx import numpy_helper

    before = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in changed.graph.initializer}
    candidates, done = folded(model), 0
    for n in (n for n in original.graph.node if n.op_type == "Conv" and n.input[1] in before):
        w = before[n.input[1]]
        match = [s for k, s in candidates if k.shape == w.shape
                 and np.allclose(k, w, rtol=1e-3, atol=1e-5 * np.abs(w).max())]
        if len(match) != 1:
            raise ValueError(f"Conv {n.name}: {len(match)} Keras weights match its ONNX weight")
        match[0](after[n.input[1]], after[n.input[2]] if len(n.input) > 2 else None)
        done += 1
    return done
