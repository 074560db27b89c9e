"""The scorer network, and a safe reader for Keras model files.

The network is a plain chain, ``Embedding -> LSTM/GRU -> Dense`` with optional
dropout, always built with a variable-length ``int32`` input so that one
SavedModel serves any padding. Classic models are read from ``.keras`` and
``.h5`` files written by Keras 3 or by tf.keras 2 (tf-keras) without
deserializing any Python object: only the JSON config of a whitelist of
layers and the weight arrays are read, so a file cannot run code (a stricter
rule than Keras' own ``safe_mode``, which tf.keras 2 files fail anyway because
Keras 3 refuses their configs).
"""

import dataclasses
import io
import json
import re
import zipfile
from typing import Any, Optional

import numpy as np

_ACTIVATIONS = frozenset([
    'linear', 'relu', 'sigmoid', 'hard_sigmoid', 'tanh', 'softmax', 'elu',
    'selu', 'softplus', 'softsign', 'exponential', 'gelu', 'swish', 'silu'
])

# For each supported layer: the constructor arguments kept from a config.
_LAYER_ARGS = {
    'Embedding': ('input_dim', 'output_dim', 'mask_zero', 'trainable'),
    'LSTM': ('units', 'activation', 'recurrent_activation', 'use_bias',
             'unit_forget_bias', 'go_backwards', 'return_sequences', 'dropout',
             'recurrent_dropout', 'trainable'),
    'GRU': ('units', 'activation', 'recurrent_activation', 'use_bias',
            'reset_after', 'go_backwards', 'return_sequences', 'dropout',
            'recurrent_dropout', 'trainable'),
    'Dense': ('units', 'activation', 'use_bias', 'trainable'),
    'Dropout': ('rate',),
    'SpatialDropout1D': ('rate',),
    'Activation': ('activation',),
}
_RECURRENT = ('LSTM', 'GRU')
# Operations Keras 3 records in functional configs to compute the mask.
_MASK_OPS = ('NotEqual',)


class ModelFileError(ValueError):
  """A Keras model file cannot be imported as a scorer."""


@dataclasses.dataclass
class LayerSpec:
  """One layer of the chain: its class, constructor arguments and weights."""
  class_name: str
  config: dict[str, Any]
  weights: Optional[list[np.ndarray]] = None


def classic_layers(
    embedding_rows: int,
    embedding_dim: int,
    *,
    units: int = 32,
    n_outputs: int = 8,
    mask_zero: bool = True,
    trainable_embedding: bool = False,
    dropout: float = 0.0,
    embedding_matrix: Optional[np.ndarray] = None) -> list[LayerSpec]:
  """The classic scorer: ``Embedding -> LSTM(units) -> Dense(n_outputs)``.

  Args:
    embedding_rows: vocabulary size + 1 (row 0 is padding).
    embedding_dim: word vector size.
    units: LSTM units.
    n_outputs: number of scores.
    mask_zero: mask id 0 so padding is ignored. Leave it on.
    trainable_embedding: fine-tune the word vectors.
    dropout: dropout rate after the LSTM (0 for none).
    embedding_matrix: initial word vectors, ``[embedding_rows, embedding_dim]``.
  """
  if embedding_matrix is not None and embedding_matrix.shape != (
      embedding_rows, embedding_dim):
    raise ValueError(
        f'embedding_matrix must have shape {(embedding_rows, embedding_dim)}; '
        f'received {embedding_matrix.shape}.')
  layers = [
      LayerSpec(
          'Embedding', {
              'input_dim': embedding_rows, 'output_dim': embedding_dim,
              'mask_zero': mask_zero, 'trainable': trainable_embedding,
              'name': 'embedding'
          },
          None if embedding_matrix is None else [embedding_matrix]),
      LayerSpec('LSTM', {'units': units, 'name': 'lstm'}),
  ]
  if dropout:
    layers.append(LayerSpec('Dropout', {'rate': dropout, 'name': 'dropout'}))
  layers.append(LayerSpec('Dense', {'units': n_outputs, 'name': 'scores'}))
  return layers


def build_model(layers: list[LayerSpec], name: str = 'scorer'):
  """Builds a Keras model with a ``[batch, None]`` int32 input from specs."""
  import keras  # pylint: disable=import-outside-toplevel
  inputs = keras.Input(shape=(None,), dtype='int32', name='token_ids')
  x = inputs
  built = []
  for spec in layers:
    layer = getattr(keras.layers, spec.class_name)(**spec.config)
    x = layer(x)
    built.append(layer)
  model = keras.Model(inputs, x, name=name)
  for spec, layer in zip(layers, built):
    if spec.weights is not None:
      layer.set_weights(spec.weights)
  return model


@dataclasses.dataclass(frozen=True)
class ModelSummary:
  """What a bundle needs to know about a scorer network."""
  embedding_rows: int
  embedding_dim: int
  mask_zero: bool
  n_outputs: int


def summarize(model) -> ModelSummary:
  """Checks that ``model`` is a scorer chain and describes it."""
  layers = [l for l in model.layers if type(l).__name__ != 'InputLayer']
  if not layers or type(layers[0]).__name__ != 'Embedding':
    raise ModelFileError(
        'expected the first layer to be an Embedding; received '
        f'{[type(l).__name__ for l in layers]}.')
  emb = layers[0]
  shape = model.output_shape
  if len(shape) != 2:
    raise ModelFileError(
        f'expected the model to output [batch, n_outputs]; received {shape}.')
  return ModelSummary(emb.input_dim, emb.output_dim, bool(emb.mask_zero),
                      int(shape[-1]))


def _layer_args(class_name: str, config: dict[str, Any], where: str):
  args = {k: config[k] for k in _LAYER_ARGS[class_name] if k in config}
  for key in ('activation', 'recurrent_activation'):
    if key in args and args[key] not in _ACTIVATIONS:
      raise ModelFileError(
          f'{where}: layer {config.get("name")!r} has {key} {args[key]!r}; '
          f'only the built-in activations {sorted(_ACTIVATIONS)} are '
          f'imported.')
  if 'name' in config:
    args['name'] = str(config['name'])
  return args


def _inbound_name(layer_config: dict[str, Any]) -> Optional[str]:
  """The name of the layer feeding a functional layer (both Keras formats)."""
  nodes = layer_config.get('inbound_nodes') or []
  if not nodes:
    return None
  node = nodes[0]
  if isinstance(node, dict):  # Keras 3
    args = node.get('args') or []
    if args and isinstance(args[0], dict):
      return args[0].get('config', {}).get('keras_history', [None])[0]
    return None
  if isinstance(node, list) and node and isinstance(node[0], list):  # Keras 2
    return node[0][0]
  return None


def _fixed_length(layer_configs: list[dict[str, Any]]) -> Optional[int]:
  for layer in layer_configs:
    config = layer.get('config', {})
    for key in ('batch_shape', 'batch_input_shape'):
      shape = config.get(key)
      if shape and len(shape) == 2 and shape[1] is not None:
        return int(shape[1])
    if config.get('input_length'):
      return int(config['input_length'])
  return None


def parse_model_config(model_config: dict[str, Any], where: str
                       ) -> tuple[list[LayerSpec], Optional[int]]:
  """Turns a saved model config into layer specs and its fixed input length.

  Raises:
    ModelFileError: the model is not a chain of supported layers.
  """
  class_name = model_config.get('class_name')
  if class_name not in ('Sequential', 'Functional', 'Model'):
    raise ModelFileError(
        f'{where}: expected a Sequential or Functional model; received '
        f'{class_name!r}.')
  layer_configs = model_config.get('config', {}).get('layers', [])
  specs, previous = [], None
  for layer in layer_configs:
    name = layer.get('class_name')
    config = layer.get('config', {})
    if name == 'InputLayer' or name in _MASK_OPS:
      if name == 'InputLayer':
        previous = config.get('name')
      continue
    if name not in _LAYER_ARGS:
      raise ModelFileError(
          f'{where}: layer {config.get("name")!r} is a {name}; only '
          f'{sorted(_LAYER_ARGS)} layers are imported (no Lambda or custom '
          f'layers: they would run code from the file).')
    if class_name != 'Sequential':
      inbound = _inbound_name(layer)
      if previous is not None and inbound != previous:
        raise ModelFileError(
            f'{where}: layer {config.get("name")!r} takes its input from '
            f'{inbound!r}, not from {previous!r}; only a single chain of '
            f'layers is imported.')
      previous = config.get('name')
    specs.append(LayerSpec(name, _layer_args(name, config, where)))
  if not specs or specs[0].class_name != 'Embedding':
    raise ModelFileError(
        f'{where}: expected an Embedding as first layer; received '
        f'{[s.class_name for s in specs]}.')
  recurrent = [s for s in specs if s.class_name in _RECURRENT]
  if len(recurrent) != 1 or recurrent[0].config.get('return_sequences'):
    raise ModelFileError(
        f'{where}: expected exactly one LSTM or GRU returning its last '
        f'state; received {[s.class_name for s in specs]}.')
  return specs, _fixed_length(layer_configs)


def _snake_case(name: str) -> str:
  name = re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', name)
  return re.sub(r'([a-z])([A-Z])', r'\1_\2', name).lower()


def _h5_weights(group) -> dict[str, list[np.ndarray]]:
  weights = {}
  for name in group.keys():
    names = [
        n.decode('utf-8') if isinstance(n, bytes) else str(n)
        for n in group[name].attrs.get('weight_names', [])
    ]
    weights[name] = [np.asarray(group[name][n]) for n in names]
  return weights


def _keras_v3_weights(h5) -> dict[str, list[np.ndarray]]:
  weights = {}
  layers = h5.get('layers')
  if layers is None:
    return weights
  for name in layers.keys():
    arrays = []
    for sub in ('vars', 'cell/vars'):
      if sub in layers[name]:
        group = layers[name][sub]
        arrays += [np.asarray(group[k]) for k in sorted(group.keys(), key=int)]
    weights[name] = arrays
  return weights


def read_keras_file(path: str) -> tuple[list[LayerSpec], Optional[int]]:
  """Reads a ``.keras`` or ``.h5`` scorer without deserializing objects.

  Args:
    path: a local file written by ``model.save()`` of Keras 3 or tf.keras 2.

  Returns:
    ``(layer specs with weights, fixed input length or None)``.

  Raises:
    ModelFileError: the file is unreadable, not a scorer chain, or its weights
      do not match its layers.
  """
  import h5py  # pylint: disable=import-outside-toplevel
  is_zip = zipfile.is_zipfile(path)
  try:
    if is_zip:
      with zipfile.ZipFile(path) as z:
        config = json.loads(z.read('config.json'))
        with h5py.File(io.BytesIO(z.read('model.weights.h5')), 'r') as h5:
          weights = _keras_v3_weights(h5)
    else:
      with h5py.File(path, 'r') as h5:
        if 'model_config' not in h5.attrs:
          raise ModelFileError(
              f'{path}: an HDF5 file without a model config (weights only?); '
              f'save the whole model with model.save().')
        raw = h5.attrs['model_config']
        config = json.loads(raw.decode('utf-8') if isinstance(raw, bytes)
                            else raw)
        weights = _h5_weights(h5['model_weights'] if 'model_weights' in h5
                              else h5)
  except ModelFileError:
    raise
  except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
    raise ModelFileError(
        f'{path}: cannot read a Keras model from this file ({e}).') from e
  specs, fixed = parse_model_config(config, path)
  seen: dict[str, int] = {}
  for spec in specs:
    name = spec.config.get('name')
    # The .keras format files weights by class name in layer order
    # ("lstm", "lstm_1"...); legacy HDF5 by layer name.
    key = _snake_case(spec.class_name)
    count = seen.get(key, 0)
    seen[key] = count + 1
    by_position = f'{key}_{count}' if count else key
    spec.weights = weights.get(by_position if is_zip else name)
    if spec.class_name not in ('Dropout', 'SpatialDropout1D', 'Activation'):
      if not spec.weights:
        raise ModelFileError(f'{path}: no weights found for layer {name!r}.')
  return specs, fixed
