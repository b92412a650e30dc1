"""Lets the official neuroailab/convrnns code (written for TensorFlow 1.13) import and build its
graphs, unmodified, under a current TensorFlow 2.x (CPU) and networkx 3.x.

`install()` must run before `import convrnns`. It puts into `sys.modules`:

- `tensorflow`: a facade whose attributes are `tf.compat.v1`'s (graph mode, variable scopes,
  `tf.get_variable`, TF1 initialisers), plus `contrib` and a stub `layers.BatchNormalization` (the
  released models use no batch norm; the class is only subclassed at import time);
- `tensorflow.contrib.layers`: TF1's `layer_norm` (epsilon 1e-12, statistics over every axis but
  the batch, per-channel `beta`/`gamma` created in that order under the given scope),
  `xavier_initializer`, `l2_regularizer`/`l1_regularizer`/`sum_regularizer`, `fully_connected`
  (variables `weights`/`biases`), `flatten`, `avg_pool2d`;
- `tensorflow.contrib.rnn`: `LSTMStateTuple` and the legacy `RNNCell` base class (Keras 3 hides
  TensorFlow's; the convrnns cells override everything it provides);
- `tensorflow.contrib.tpu...`: empty stand-ins for the TPU batch-norm imports;

and gives networkx 3's `DiGraph` networkx 1.x's API: the `data=` constructor argument, `G.node[n]`
and list-returning `successors`/`predecessors`.

Nothing here changes what a released model computes: every op the models use is TensorFlow's own.
"""

import collections
import sys
import types

import networkx as nx
import tensorflow as _tf
import tensorflow.python.framework.ops  # noqa: F401  (registers tensorflow.python for the facade)

v1 = _tf.compat.v1


def _layer_norm(inputs, center=True, scale=True, activation_fn=None, reuse=None,
                variables_collections=None, outputs_collections=None, trainable=True,
                begin_norm_axis=1, begin_params_axis=-1, scope=None):
    """TF1 `tf.contrib.layers.layer_norm`, as in TensorFlow 1.13's `layers.py`."""
    with v1.variable_scope(scope, "LayerNorm", [inputs], reuse=reuse):
        inputs = v1.convert_to_tensor(inputs)
        shape = inputs.shape
        rank = shape.ndims
        if begin_norm_axis < 0:
            begin_norm_axis = rank + begin_norm_axis
        params_shape = shape[begin_params_axis:]
        beta = gamma = None
        if center:
            beta = v1.get_variable("beta", shape=params_shape, dtype=inputs.dtype.base_dtype,
                                   initializer=v1.zeros_initializer(), trainable=trainable)
        if scale:
            gamma = v1.get_variable("gamma", shape=params_shape, dtype=inputs.dtype.base_dtype,
                                    initializer=v1.ones_initializer(), trainable=trainable)
        axes = list(range(begin_norm_axis, rank))
        mean, variance = v1.nn.moments(inputs, axes, keep_dims=True)
        outputs = v1.nn.batch_normalization(inputs, mean, variance, offset=beta, scale=gamma,
                                            variance_epsilon=1e-12)
        outputs.set_shape(shape)
        if activation_fn is not None:
            outputs = activation_fn(outputs)
        return outputs


def _xavier_initializer(uniform=True, seed=None, dtype=v1.float32):
    """TF1 `xavier_initializer`: variance scaling 1.0, fan_avg, uniform (or truncated normal)."""
    return v1.variance_scaling_initializer(
        scale=1.0, mode="fan_avg", distribution="uniform" if uniform else "truncated_normal",
        seed=seed, dtype=dtype)


def _l2_regularizer(scale, scope=None):
    if scale == 0.0:
        return lambda _: None
    return lambda w: v1.multiply(scale, v1.nn.l2_loss(w), name="l2_regularizer")


def _l1_regularizer(scale, scope=None):
    if scale == 0.0:
        return lambda _: None
    return lambda w: v1.multiply(scale, v1.reduce_sum(v1.abs(w)), name="l1_regularizer")


def _sum_regularizer(regularizer_list, scope=None):
    def total(w):
        terms = [t for t in (r(w) for r in regularizer_list) if t is not None]
        return v1.add_n(terms) if terms else None
    return total


def _fully_connected(inputs, num_outputs, activation_fn=v1.nn.relu, weights_initializer=None,
                     biases_initializer=v1.zeros_initializer(), weights_regularizer=None,
                     biases_regularizer=None, trainable=True, scope=None, reuse=None, **_):
    with v1.variable_scope(scope, "fully_connected", [inputs], reuse=reuse):
        inputs = v1.convert_to_tensor(inputs)
        w = v1.get_variable("weights", [inputs.shape[-1], num_outputs],
                            initializer=weights_initializer or _xavier_initializer(),
                            regularizer=weights_regularizer, trainable=trainable)
        out = v1.matmul(inputs, w)
        if biases_initializer is not None:
            b = v1.get_variable("biases", [num_outputs], initializer=biases_initializer,
                                regularizer=biases_regularizer, trainable=trainable)
            out = v1.nn.bias_add(out, b)
        return activation_fn(out) if activation_fn is not None else out


def _flatten(inputs, outputs_collections=None, scope=None):
    """TF1 `contrib.layers.flatten`: keep the batch dimension, flatten the rest."""
    inputs = v1.convert_to_tensor(inputs)
    return v1.reshape(inputs, [inputs.shape.as_list()[0], -1])


def _avg_pool2d(inputs, kernel_size, stride=2, padding="VALID", **_):
    k = [kernel_size, kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
    s = [stride, stride] if isinstance(stride, int) else list(stride)
    return v1.nn.avg_pool(inputs, [1] + k + [1], [1] + s + [1], padding)


class RNNCell(object):
    """Stand-in for TF1's `RNNCell` base class (the convrnns `GenFuncCell` defines its own
    `__init__`, `__call__`, `state_size` and `output_size`)."""


class _BatchNormalizationStub(object):
    """Stand-in for `tf.layers.BatchNormalization`, which `crossdevice_batchnorm` subclasses at
    import time; no released model uses batch norm, so it is never instantiated."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("batch norm is not part of the released convrnns models")


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _install_networkx_1x_api():
    init = nx.DiGraph.__init__

    def init_1x(self, incoming_graph_data=None, data=None, **attr):
        # networkx 1.x named the first argument `data`; 3.x would take it as a graph attribute.
        init(self, data if incoming_graph_data is None else incoming_graph_data, **attr)

    nx.DiGraph.__init__ = init_1x
    nx.DiGraph.node = property(lambda self: self.nodes)
    succ, pred = nx.DiGraph.successors, nx.DiGraph.predecessors
    nx.DiGraph.successors = lambda self, n: list(succ(self, n))
    nx.DiGraph.predecessors = lambda self, n: list(pred(self, n))


def install():
    """Installs the facade modules (idempotent) and switches TensorFlow to TF1 behaviour."""
    if getattr(sys.modules.get("tensorflow"), "_convrnns_shim", False):
        return sys.modules["tensorflow"]
    v1.disable_v2_behavior()
    real = _tf
    contrib_layers = _module(
        "tensorflow.contrib.layers", layer_norm=_layer_norm, xavier_initializer=_xavier_initializer,
        l2_regularizer=_l2_regularizer, l1_regularizer=_l1_regularizer,
        sum_regularizer=_sum_regularizer, fully_connected=_fully_connected, flatten=_flatten,
        avg_pool2d=_avg_pool2d)
    LSTMStateTuple = collections.namedtuple("LSTMStateTuple", ("c", "h"))
    contrib_rnn = _module("tensorflow.contrib.rnn", LSTMStateTuple=LSTMStateTuple, RNNCell=RNNCell)
    tpu_ops = _module("tensorflow.contrib.tpu.python.ops.tpu_ops")
    tpu_function = _module("tensorflow.contrib.tpu.python.tpu.tpu_function")
    _module("tensorflow.contrib.tpu.python.ops", tpu_ops=tpu_ops)
    _module("tensorflow.contrib.tpu.python.tpu", tpu_function=tpu_function)
    tpu_python = _module("tensorflow.contrib.tpu.python")
    contrib_tpu = _module("tensorflow.contrib.tpu", python=tpu_python)
    contrib = _module("tensorflow.contrib", layers=contrib_layers, rnn=contrib_rnn, tpu=contrib_tpu)
    layers = types.SimpleNamespace(BatchNormalization=_BatchNormalizationStub,
                                   batch_normalization=None)

    facade = types.ModuleType("tensorflow")

    def __getattr__(name):
        return getattr(v1, name)

    facade.__getattr__ = __getattr__
    facade.__version__ = real.__version__
    facade.contrib = contrib
    facade.layers = layers
    facade.python = sys.modules["tensorflow.python"]
    facade.__path__ = []  # a package, so `from tensorflow.python.framework import ops` resolves
    facade._convrnns_shim = True
    sys.modules["tensorflow"] = facade
    _install_networkx_1x_api()
    return facade
