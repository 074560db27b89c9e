"""A RunInference ``ModelHandler`` that scores id sequences with a bundle.

Beam's ``TFModelHandlerNumpy`` does not serve here: it loads through Keras
``load_model``, which Keras 3 refuses for SavedModels, and it stacks examples
with ``numpy.stack``, which fails for sequences of different lengths. This
handler loads the SavedModel with ``tf.saved_model.load`` and pads each batch
the way the bundle says (`model.bundle.Bundle.pad`): a masked model gets
right padding to the batch's own longest sequence, a fixed-length model
exactly ``maxlen``.

Batching, as Beam 2.77 does it in a batch (not streaming) pipeline:

* ``RunInference`` batches with ``BatchElements``. Its ``length_fn`` /
  ``bucket_boundaries`` (``batch_length_fn`` / ``batch_bucket_boundaries``
  here) only act on the stateful path taken when ``max_batch_duration_secs``
  is set, which counts elements and ignores sizes: no token budget.
* ``max_batch_weight`` is accepted by ``ModelHandler`` but ``BatchElements``
  has no such argument: RunInference would fail to construct with it.
* On the global-window path ``BatchElements`` sums ``element_size_fn`` and
  keeps the sum between ``min_batch_size`` and ``max_batch_size``. So the
  token budget is ``max_batch_size`` in tokens, with ``element_size_fn`` the
  sequence length (``maxlen`` for fixed-length bundles). ``min_batch_size``
  defaults to the same budget: the adaptive estimator would otherwise start
  small and grow batches as the job runs, so memory would depend on how long
  the job is.
* ``BatchElements`` batches in arrival order; ``SortAndBatchElements`` sorts
  but holds a whole bundle in memory and cannot feed RunInference. Length
  grouping is therefore done upstream by `transforms.batching.SortByLength`,
  with a bounded buffer.

Because a batch's padded size is ``rows x longest``, not the sum of lengths,
`run_inference` also sorts each batch and splits it into chunks whose padded
size stays within the budget: memory is bounded whatever arrives.
Empty documents never reach the model: a fully masked row is rejected by
cuDNN, and the bundle already holds the all-padding score.
"""

import dataclasses
import functools
import logging
import os
import socket
import threading
from typing import (Any, Callable, Iterable, NamedTuple, Optional, Sequence,
                    Union)

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model.bundle import Bundle, RecentByPath, forget_bundle, load_bundle
from runtime.cores import core_share
from runtime.tensorflow_import import import_tensorflow
from model.text import budget_batches
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)

DEFAULT_BATCH_TOKENS = 1 << 21
# The SavedModel's signature keeps ~100 float32 values per padded token
# (embeddings, the step outputs) where `model.lstm_scorer` keeps the id: a
# batch scored by the signature is split further, to this many tokens.
SIGNATURE_BATCH_TOKENS = 1 << 19
SCORING_FUNCTIONS = ('auto', 'signature')
# Rows of one call to the fast loop: a step costs ~35 us plus ~0.5 us a row,
# so a few hundred rows amortise the step; more rows in a length-sorted
# batch mostly add padding. 512 rows took 0.84x to 0.88x the model time of
# uncapped 2^21-token batches on 4,000 benchmark documents (one run each).
LSTM_BATCH_ROWS = 512
# Documents scored per worker process: one counter per process, named
# ``scored_by_worker:HOST:PID``, so a job's metrics show which workers scored.
WORKER_COUNTER_PREFIX = 'scored_by_worker:'
# Models loaded, by the function that scores with them (``..._lstm``,
# ``..._signature``; see `model.bundle.Bundle.load_signature`).
MODELS_LOADED_PREFIX = 'models_loaded_'


def worker_identity() -> str:
  """``HOST:PID`` of the process running this code."""
  return f'{socket.gethostname()}:{os.getpid()}'


def _padded_size(element: Any, *, fixed_length: Optional[int]) -> int:
  """Tokens an element adds to a padded batch (keyed or not)."""
  if fixed_length:
    return fixed_length
  example = element[1] if isinstance(element, tuple) else element
  return max(1, len(example))


@dataclasses.dataclass(frozen=True)
class CoreShare:
  """TensorFlow threads as a share of the scoring machine's cores.

  On a cluster the submitting machine cannot see a worker's cores: a Spark
  executor or a Flink TaskManager that runs ``processes`` Python SDK
  processes (``--sdk_worker_parallelism``) gives each of them its cores
  divided by ``processes``, counted where the model loads. Measured on this
  project's 2-core machine (Spark, two SDK processes, 8,000 documents): two
  TensorFlow threads each took 47.6 to 52.5 CPU-s in the two processes, one
  thread each 39.1 to 43.6 (two runs each).

  Args:
    processes: the worker processes that share one machine's cores.

  Raises:
    ValueError: ``processes`` is not a positive integer.
  """
  processes: int

  def __post_init__(self):
    if (not isinstance(self.processes, int) or isinstance(self.processes, bool)
        or self.processes < 1):
      raise ValueError(f'CoreShare needs a positive number of processes; '
                       f'received {self.processes!r}.')

  def threads(self, cores: Optional[int] = None) -> int:
    """The threads of one process on a machine with ``cores`` (default:
    this process's cores); at least 1."""
    return core_share(self.processes, cores or 0)


TFThreads = Union[int, CoreShare]


def set_tf_threads(threads: TFThreads) -> bool:
  """Sizes TensorFlow's thread pools to ``threads``; 0 leaves TF's default.

  ``threads`` may be a `CoreShare`, counted here. Must run before TensorFlow
  executes anything in this process; returns False (and changes nothing)
  when it is too late, e.g. in a process that already validated the bundle.
  """
  if isinstance(threads, CoreShare):
    threads = threads.threads()
  if threads <= 0:
    return False
  tf = import_tensorflow()
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current != threads:
      _LOGGER.debug('TensorFlow already started with %s threads; keeping '
                    'them instead of %d', current or 'default', threads)
    return False
  _LOGGER.debug('TensorFlow threads: %d', threads)
  return True


def chunk_limits(predict: Callable, batch_tokens: int,
                 row_length: Optional[int] = None) -> dict[str, Any]:
  """`budget_batches` limits for one call to ``predict``.

  Args:
    predict: a `Bundle.load_signature` function (its ``kind`` decides).
    batch_tokens: the token budget asked for.
    row_length: the padded row length of fixed-length bundles.

  Returns:
    ``batch_tokens`` and ``max_rows``: the signature's batches stay within
    `SIGNATURE_BATCH_TOKENS` (or one row), the fast loop's within
    `LSTM_BATCH_ROWS` rows.
  """
  if predict.kind == 'signature':
    return {'batch_tokens': min(batch_tokens,
                                max(SIGNATURE_BATCH_TOKENS, row_length or 0)),
            'max_rows': None}
  return {'batch_tokens': batch_tokens, 'max_rows': LSTM_BATCH_ROWS}


class ScoringModel:
  """A loaded bundle: its padding rules and its thread-safe predict."""
  def __init__(self, bundle: Bundle, predict: Callable[[np.ndarray],
                                                       np.ndarray]):
    self.bundle = bundle
    self.predict = predict
    self._lock = threading.Lock()
    self._used = False

  def first_use(self) -> bool:
    """True exactly once: the first time any thread scores with it."""
    with self._lock:
      first, self._used = not self._used, True
    return first


class BundleModelHandler(ModelHandler[np.ndarray, PredictionResult,
                                      ScoringModel]):
  """Scores int32 id sequences (already truncated to maxlen) with a bundle.

  Args:
    bundle_path: the bundle directory on any Beam filesystem.
    batch_tokens: the token budget of one padded batch.
    min_batch_tokens: the smallest batch BatchElements aims for; by default
      the budget itself. In a batch job larger batches are cheaper per token,
      and a fixed batch size keeps memory the same for any corpus size
      (BatchElements' adaptive sizing would grow batches as the job runs).
    inference_fn: optional ``fn(model, padded_ids) -> scores``; defaults to
      the SavedModel's signature (useful to add tracing or fault injection).
    tf_threads: TensorFlow threads (intra- and inter-op) in each worker
      process; 0 keeps TensorFlow's default (all the cores it sees). Set it
      to the worker's share of the cores when several worker processes
      share a machine, or give a `CoreShare` to have each worker count it.
    scoring_function: ``'auto'`` scores with `model.lstm_scorer` where it
      applies and agrees with the SavedModel's signature on a probe, else
      with the signature; ``'signature'`` always with the signature.
    kwargs: passed to ``ModelHandler`` (``large_model``, ``model_copies``...).
  """
  def __init__(self,
               bundle_path: str,
               *,
               batch_tokens: int = DEFAULT_BATCH_TOKENS,
               min_batch_tokens: Optional[int] = None,
               inference_fn: Optional[Callable[[ScoringModel, np.ndarray],
                                               np.ndarray]] = None,
               tf_threads: TFThreads = 0,
               scoring_function: str = 'auto',
               **kwargs):
    if scoring_function not in SCORING_FUNCTIONS:
      raise ValueError(
          f'scoring_function must be one of {SCORING_FUNCTIONS}; received '
          f'{scoring_function!r}.')
    bundle = load_bundle(bundle_path, check_model=False)
    if batch_tokens < bundle.maxlen:
      raise ValueError(
          f'batch_tokens must hold at least one document of maxlen '
          f'{bundle.maxlen}; received {batch_tokens}.')
    self._bundle_path = bundle_path
    self._batch_tokens = batch_tokens
    self._inference_fn = inference_fn
    self._tf_threads = tf_threads
    self._scoring_function = scoring_function
    super().__init__(
        min_batch_size=min_batch_tokens or batch_tokens,
        max_batch_size=batch_tokens,
        element_size_fn=self._element_size_fn(bundle),
        **kwargs)
    self._models_loaded = Metrics.counter(NAMESPACE, 'models_loaded')
    self._padded = Metrics.counter(NAMESPACE, 'padded_tokens')

  @staticmethod
  def _element_size_fn(bundle: Bundle) -> Callable[[Any], int]:
    return functools.partial(
        _padded_size, fixed_length=None if bundle.masked else bundle.maxlen)

  def load_model(self) -> ScoringModel:
    return self._load(self._bundle_path)

  def _load(self, bundle_path: str) -> ScoringModel:
    set_tf_threads(self._tf_threads)
    bundle = load_bundle(bundle_path, check_model=False)
    predict = bundle.load_signature(fast=self._scoring_function == 'auto')
    model = ScoringModel(bundle, predict)
    _LOGGER.info('Loaded bundle %s (scoring with %s)', bundle_path,
                 predict.kind)
    return model

  def run_inference(
      self,
      batch: Sequence[np.ndarray],
      model: ScoringModel,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    Metrics.counter(NAMESPACE, WORKER_COUNTER_PREFIX +
                    worker_identity()).inc(len(batch))
    return [
        PredictionResult(example, inference, self._bundle_path)
        for example, inference in zip(batch, self._score(batch, model))
    ]

  def _score(self, batch: Sequence[np.ndarray],
             model: ScoringModel) -> list[np.ndarray]:
    """The scores of each id sequence of ``batch``, in its order."""
    if model.first_use():
      # Counted here, not in load_model: Beam drops metrics updated during
      # setup(), where RunInference loads the model.
      self._models_loaded.inc()
      Metrics.counter(NAMESPACE,
                      MODELS_LOADED_PREFIX + model.predict.kind).inc()
    bundle = model.bundle
    lengths = [len(x) for x in batch]
    scores: list[Optional[np.ndarray]] = [None] * len(batch)
    for i, n in enumerate(lengths):
      if n == 0:
        scores[i] = bundle.empty_document_scores
    order = sorted((i for i, n in enumerate(lengths) if n), key=lengths.__getitem__)
    fixed = None if bundle.masked else bundle.maxlen
    for chunk in budget_batches(order, lengths, row_length=fixed,
                                **chunk_limits(model.predict,
                                               self._batch_tokens, fixed)):
      padded = bundle.pad([batch[i] for i in chunk])
      self._padded.inc(padded.size)
      if self._inference_fn is not None:
        out = self._inference_fn(model, padded)
      else:
        out = model.predict(padded)
      for row, i in enumerate(chunk):
        scores[i] = out[row]
    return scores

  def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
    return sum(x.nbytes for x in batch)

  def get_metrics_namespace(self) -> str:
    return NAMESPACE


class BundleIds(NamedTuple):
  """An example for `RefreshingBundleModelHandler`: ids and their bundle.

  Attributes:
    bundle_path: the bundle whose vocabulary gave the ids, and whose model
      scores them.
    ids: int32 ids, already truncated to that bundle's maxlen.
  """
  bundle_path: str
  ids: np.ndarray


def _bundle_ids_size(element: Any) -> int:
  """Tokens a (keyed) `BundleIds` adds to a batch, before padding.

  A fixed-length bundle pads its rows to its maxlen; `run_inference` splits
  each batch by its padded size, so memory stays within the budget even
  where this estimate is short.
  """
  example = element if isinstance(element, BundleIds) else element[1]
  return max(1, len(example.ids))


class ScoringModels(RecentByPath):
  """The loaded bundles of one worker, by path, loaded on first use: the
  most recently used `MODELS_KEPT` (`model.bundle.RecentByPath`).

  Args:
    load: ``load(bundle_path) -> ScoringModel``.
  """
  MODELS_KEPT = 3

  def __init__(self, load: Callable[[str], ScoringModel]):
    # A dropped bundle is forgotten: the process's bundle registry would
    # keep its model alive.
    super().__init__(load, self.MODELS_KEPT, forget=forget_bundle)


class RefreshingBundleModelHandler(BundleModelHandler):
  """Scores `BundleIds`, each with the model of its own bundle.

  With model updates on, ``ScoreDocuments`` names each document's bundle
  before the ids are looked up (`transforms.refresh.AssignBundles`); this
  handler scores each document with that bundle's model, so the vocabulary
  that gave the ids and the model that reads them always match. Models are
  cached by path in each worker (`ScoringModels`): a document of a bundle
  the worker already holds never reloads it. Each `PredictionResult`'s
  ``model_id`` is the path of the bundle that scored it.

  Args:
    bundle_path: the bundle that scores first; it sizes the budget checks.
    kwargs: as for `BundleModelHandler`.
  """
  @staticmethod
  def _element_size_fn(bundle: Bundle) -> Callable[[Any], int]:
    del bundle  # Each example's own bundle decides.
    return _bundle_ids_size

  def load_model(self) -> ScoringModels:
    models = ScoringModels(self._load)
    models.get(self._bundle_path)  # Fails early where the first cannot load.
    return models

  def run_inference(
      self,
      batch: Sequence[BundleIds],
      model: ScoringModels,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    Metrics.counter(NAMESPACE, WORKER_COUNTER_PREFIX +
                    worker_identity()).inc(len(batch))
    by_bundle: dict[str, list[int]] = {}
    for i, example in enumerate(batch):
      by_bundle.setdefault(example.bundle_path, []).append(i)
    results: list[Optional[PredictionResult]] = [None] * len(batch)
    for bundle_path, members in by_bundle.items():
      scores = self._score([batch[i].ids for i in members],
                           model.get(bundle_path))
      for i, inference in zip(members, scores):
        results[i] = PredictionResult(batch[i], inference, bundle_path)
    return results

  def get_num_bytes(self, batch: Sequence[BundleIds]) -> int:
    return sum(x.ids.nbytes for x in batch)
