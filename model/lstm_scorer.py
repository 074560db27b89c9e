"""A faster scoring function for Embedding -> LSTM -> Dense bundles.

The SavedModel's signature runs Keras' generic LSTM: every step multiplies
its embedding row by the input kernel, reads the mask, tiles it three times
and stores the step's output in a list nobody reads (45 graph nodes per step
in a bundle exported by Keras 3). This package's architecture (a frozen
``Embedding``, one ``LSTM``, one linear ``Dense``) allows a much smaller
loop, computed from the same weights:

* the embedding never trains, so ``embeddings @ kernel + bias`` is one table
  computed at load: a step gathers its input projection instead of
  multiplying (with 64-dim vectors and 32 units, two thirds of the
  multiply-adds, and the ``[time, batch, embedding]`` tensor, are gone);
* the gates are reordered to ``i, f, o, c`` so that one sigmoid covers three;
* only the state is carried; masked steps keep it, as Keras does.

Memory per padded token is the int32 id alone, so batches can be larger,
which matters because a step costs a fixed ~35 us of TensorFlow dispatch
besides its per-row work: long documents come in batches of few rows.

On the benchmark's first 2,000 documents, one TensorFlow thread, model
alone: the signature took 6.0 s, this loop 4.6 s in the same 2^19-token
batches and 3.45 s in 2^21-token ones (one run each, on this project's
2-core machine).

The result is used only where it agrees with the signature: `for_bundle`
compares both on a probe and returns None on any difference over
`TOLERANCE`, or when the SavedModel's variables are not exactly that
architecture's; the caller then keeps the signature.
"""

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import numpy as np

from runtime.tensorflow_import import import_tensorflow

_LOGGER = logging.getLogger(__name__)

#: Largest absolute difference from the signature accepted on the probe, as
#: a fraction of the largest probe score (and at least this much absolutely).
TOLERANCE = 1e-5
_PROBE_LENGTHS = (1, 2, 5, 17, 64, 257)
_PROBE_SEED = 20260


@dataclasses.dataclass(frozen=True)
class LstmWeights:
  """The weights of an Embedding -> LSTM -> Dense model (Keras layouts).

  Attributes:
    embeddings: ``[rows, dim]``; row 0 is padding.
    kernel: ``[dim, 4 * units]``, gates in Keras order ``i, f, c, o``.
    recurrent_kernel: ``[units, 4 * units]``.
    bias: ``[4 * units]`` (zeros when the LSTM has none).
    dense_kernel: ``[units, outputs]``.
    dense_bias: ``[outputs]``.
  """
  embeddings: np.ndarray
  kernel: np.ndarray
  recurrent_kernel: np.ndarray
  bias: np.ndarray
  dense_kernel: np.ndarray
  dense_bias: np.ndarray

  @property
  def units(self) -> int:
    return self.recurrent_kernel.shape[0]


def find_weights(variables: Sequence) -> Optional[LstmWeights]:
  """Picks the architecture's weights out of a SavedModel's variables.

  Layers are recognised by their variables, not by their names (imported
  models keep theirs): one ``embeddings``, one LSTM cell (``kernel``,
  ``recurrent_kernel`` of four gates, optional ``bias``, under one
  ``lstm_cell`` path) and one more ``kernel`` with an optional ``bias``.

  Args:
    variables: ``tf.Variable`` objects (``loaded.variables``).

  Returns:
    The weights, or None when the float variables are anything else.
  """
  named = {}
  for variable in variables:
    if not variable.dtype.is_floating:
      continue  # e.g. a seed generator's state
    path = variable.name.split(':')[0]
    if path in named:
      return None
    named[path] = variable
  embeddings = [p for p in named if p.rsplit('/', 1)[-1] == 'embeddings']
  recurrent = [p for p in named if p.rsplit('/', 1)[-1] == 'recurrent_kernel']
  if len(embeddings) != 1 or len(recurrent) != 1:
    return None
  cell = recurrent[0].rsplit('/', 1)[0]
  if cell.rsplit('/', 1)[-1] != 'lstm_cell' or cell + '/kernel' not in named:
    return None
  rest = {p: v for p, v in named.items()
          if p not in (embeddings[0], recurrent[0], cell + '/kernel',
                       cell + '/bias')}
  kernels = [p for p in rest if p.rsplit('/', 1)[-1] == 'kernel']
  biases = [p for p in rest if p.rsplit('/', 1)[-1] == 'bias']
  if len(kernels) != 1 or len(rest) != len(kernels) + len(biases) or (
      len(biases) > 1):
    return None

  def value(path):
    return np.asarray(named[path].numpy(), np.float32)

  units = named[recurrent[0]].shape[0]
  dense_kernel = value(kernels[0])
  weights = LstmWeights(
      embeddings=value(embeddings[0]),
      kernel=value(cell + '/kernel'),
      recurrent_kernel=value(recurrent[0]),
      bias=(value(cell + '/bias') if cell + '/bias' in named else
            np.zeros([4 * units], np.float32)),
      dense_kernel=dense_kernel,
      dense_bias=(value(biases[0]) if biases else
                  np.zeros(dense_kernel.shape[-1:], np.float32)))
  outputs = dense_kernel.shape[-1]
  shapes_fit = (
      weights.embeddings.ndim == 2 and dense_kernel.ndim == 2 and
      weights.kernel.shape == (weights.embeddings.shape[1], 4 * units) and
      weights.recurrent_kernel.shape == (units, 4 * units) and
      weights.bias.shape == (4 * units,) and
      dense_kernel.shape == (units, outputs) and
      weights.dense_bias.shape == (outputs,))
  return weights if shapes_fit else None


def token_id_checks(tf, token_ids, rows: int) -> list:
  """Graph assertions that ``0 <= token_ids < rows``.

  The exported signature and the fast loop both make them: on a GPU an
  out-of-range ``tf.gather`` silently returns zeros.
  """
  return [
      tf.debugging.assert_non_negative(
          token_ids, message='token ids must be >= 0'),
      tf.debugging.assert_less(
          token_ids, tf.constant(rows, tf.int32),
          message=f'token ids must be < {rows} (embedding rows)'),
  ]


def build_predict(weights: LstmWeights, *,
                  masked: bool) -> Callable[[np.ndarray], np.ndarray]:
  """Returns ``fn(token_ids [batch, time] int32) -> scores`` (numpy).

  Args:
    weights: the model's weights (`find_weights`).
    masked: whether id 0 is masked (``mask_zero=True``): a masked step keeps
      the state. Unmasked, id 0 is read as the embedding's row 0.
  """
  tf = import_tensorflow()
  u = weights.units
  rows = weights.embeddings.shape[0]
  order = np.concatenate([np.arange(0, 2 * u), np.arange(3 * u, 4 * u),
                          np.arange(2 * u, 3 * u)])
  table = tf.constant(
      (weights.embeddings @ weights.kernel + weights.bias)[:, order])
  recurrent = tf.constant(weights.recurrent_kernel[:, order])
  dense_kernel = tf.constant(weights.dense_kernel)
  dense_bias = tf.constant(weights.dense_bias)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)],
               autograph=False)
  def scores(token_ids):
    with tf.control_dependencies(token_id_checks(tf, token_ids, rows)):
      ids_by_step = tf.transpose(token_ids)
    live = tf.expand_dims(tf.not_equal(ids_by_step, 0), -1)
    steps, batch = tf.shape(ids_by_step)[0], tf.shape(ids_by_step)[1]
    zeros = tf.zeros(tf.stack([batch, u]), tf.float32)

    def step(t, h, c):
      z = tf.gather(table, ids_by_step[t]) + tf.matmul(h, recurrent)
      gates = tf.sigmoid(z[:, :3 * u])
      c_next = gates[:, u:2 * u] * c + gates[:, :u] * tf.tanh(z[:, 3 * u:])
      h_next = gates[:, 2 * u:] * tf.tanh(c_next)
      if masked:
        keep = live[t]
        h_next = tf.where(keep, h_next, h)
        c_next = tf.where(keep, c_next, c)
      return t + 1, h_next, c_next

    _, h, _ = tf.while_loop(lambda t, h, c: t < steps, step,
                            (tf.constant(0), zeros, zeros))
    return tf.matmul(h, dense_kernel) + dense_bias

  def predict(token_ids: np.ndarray) -> np.ndarray:
    return scores(tf.constant(token_ids, tf.int32)).numpy()

  return predict


def probe_batch(*, rows: int, maxlen: int, pad) -> np.ndarray:
  """A fixed batch of random ids of several lengths, padded by ``pad``."""
  rng = np.random.default_rng(_PROBE_SEED)
  high = max(rows - 1, 1)
  return pad([rng.integers(1, high + 1, min(n, maxlen), dtype=np.int32)
              for n in _PROBE_LENGTHS])


def for_bundle(loaded, reference: Callable[[np.ndarray], np.ndarray], *,
               masked: bool, maxlen: int,
               pad) -> Optional[Callable[[np.ndarray], np.ndarray]]:
  """The faster function for a loaded SavedModel, if it applies and agrees.

  Args:
    loaded: the object ``tf.saved_model.load`` returned.
    reference: the SavedModel's signature as ``fn(ids) -> scores``.
    masked: the bundle's ``masked``.
    maxlen: the bundle's ``maxlen``.
    pad: the bundle's ``pad`` (how a batch reaches the model).

  Returns:
    ``fn(token_ids) -> scores``, or None: the variables are not the
    architecture's, or its scores differ from ``reference`` on the probe.
  """
  weights = find_weights(getattr(loaded, 'variables', ()))
  if weights is None:
    _LOGGER.debug('Not an Embedding -> LSTM -> Dense SavedModel; scoring '
                  'with its signature')
    return None
  predict = build_predict(weights, masked=masked)
  probe = probe_batch(rows=weights.embeddings.shape[0], maxlen=maxlen,
                      pad=pad)
  try:
    expected = reference(probe)
    got = predict(probe)
  except Exception as e:  # TensorFlow raises many types here.
    _LOGGER.debug('No probe of the fast LSTM scorer (%s)', e)
    return None
  difference = float(np.max(np.abs(got - expected))) if got.shape == (
      expected.shape) else float('inf')
  limit = TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
  if not difference <= limit:
    _LOGGER.info('The fast LSTM scorer differs from the SavedModel signature '
                 'by %.3g on the probe; scoring with the signature',
                 difference)
    return None
  return predict
