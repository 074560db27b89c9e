"""``ScoreDocuments``: the composite transform from ``(id, text)`` to scores.

Steps, each with its own label::

  SegmentText -> LookUpTokenIds -> TruncateTokenIds -> SortByLength
    -> RunInference(KeyedModelHandler(BundleModelHandler)) -> ToScoreRecord

Every step runs with Beam's ``with_exception_handling``; a record that fails
anywhere leaves through the ``errors`` output as
``{"id", "stage", "reason"}``. A batch whose inference raises sends all its
records there, and the rest of the corpus is still scored.
"""

import logging
from typing import Any, Callable, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from model.bundle import load_bundle
from transforms.batching import DEFAULT_BUFFER_TOKENS, SortByLength
from transforms.handler import DEFAULT_BATCH_TOKENS, BundleModelHandler
from transforms.metrics import NAMESPACE
from transforms.tokenize import LookUpTokenIds, SegmentText, TruncateTokenIds

_LOGGER = logging.getLogger(__name__)


def _reason(exc_info: Any) -> str:
  """The readable part of Beam's ``(type, repr(exception), traceback)``."""
  if isinstance(exc_info, tuple) and len(exc_info) >= 2:
    return str(exc_info[1])
  return str(exc_info)


class _ToErrorRecord(beam.DoFn):
  """Turns a dead-letter element into ``{"id", "stage", "reason"}`` records.

  Args:
    stage: the step that failed.
    batched: the failed element is a batch of ``(id, ...)`` pairs.
  """
  def __init__(self, stage: str, *, batched: bool = False):
    self._stage = stage
    self._batched = batched
    self._errors = Metrics.counter(NAMESPACE, 'errors')

  def process(self, failure: tuple[Any, Any]):
    element, exc_info = failure
    elements = element if self._batched else [element]
    reason = _reason(exc_info)
    if self._batched:
      reason = (f'inference failed for a batch of {len(elements)} documents: '
                f'{reason}')
    for item in elements:
      self._errors.inc()
      doc_id = item[0] if isinstance(item, tuple) and item else item
      if self._batched and isinstance(doc_id, tuple):
        doc_id = doc_id[0]  # RunInference keys are (id, n_tokens, truncated).
      yield {'id': doc_id, 'stage': self._stage, 'reason': reason[:2000]}


class ScoreDocumentsResult:
  """The outputs of `ScoreDocuments`: ``scores`` and ``errors``.

  Also unpacks as ``scores, errors = ...``.
  """
  def __init__(self, scores: beam.PCollection, errors: beam.PCollection):
    self.scores = scores
    self.errors = errors

  def __iter__(self):
    return iter((self.scores, self.errors))


class ScoreDocuments(beam.PTransform):
  """Scores ``(id, text)`` pairs with a bundle.

  Outputs records ``{"id", "scores": [floats in the bundle's output order],
  "n_tokens", "truncated"}``, and on ``errors`` the records that failed, as
  ``{"id", "stage", "reason"}``. Every input ends in exactly one of the two.

  The bundle is loaded and validated (files, checksums, a probe through the
  model, the MeCab dictionary) when the transform is constructed, so a bad
  bundle fails before any worker starts.

  Example::

    scores, errors = docs | ScoreDocuments('gs://bucket/bundle')

  Args:
    bundle_path: the bundle directory on any Beam filesystem.
    batch_tokens: token budget of one padded inference batch.
    sort_buffer_tokens: tokens held to group documents by length.
    inference_fn: optional ``fn(model, padded_ids) -> scores`` replacing the
      SavedModel call (see `BundleModelHandler`).
    validate: check the bundle now (on by default).
    tf_threads: TensorFlow threads per worker process (0: TF's default); see
      `BundleModelHandler`.
  """
  def __init__(self,
               bundle_path: str,
               *,
               batch_tokens: int = DEFAULT_BATCH_TOKENS,
               sort_buffer_tokens: int = DEFAULT_BUFFER_TOKENS,
               inference_fn: Optional[Callable] = None,
               validate: bool = True,
               tf_threads: int = 0,
               label: Optional[str] = None):
    super().__init__(label)
    bundle = load_bundle(bundle_path, check_model=validate)
    if validate:
      bundle.check_environment()
    self._bundle_path = bundle_path
    self._mecab_args = bundle.mecab_args
    self._maxlen = bundle.maxlen
    self._truncating = bundle.truncating
    self._output_names = bundle.output_names
    self._batch_tokens = batch_tokens
    self._sort_buffer_tokens = sort_buffer_tokens
    self._handler = BundleModelHandler(
        bundle_path, batch_tokens=batch_tokens, inference_fn=inference_fn,
        tf_threads=tf_threads)

  @property
  def output_names(self) -> list[str]:
    return list(self._output_names)

  def expand(self, docs):
    errors = []

    def step(pcoll, label, dofn, stage):
      good, bad = (
          pcoll
          | label >> beam.ParDo(dofn).with_exception_handling(
              main_tag='ok', dead_letter_tag='failed'))
      errors.append(bad | f'{label}Errors' >> beam.ParDo(_ToErrorRecord(stage)))
      return good

    segmented = step(docs, 'SegmentText', SegmentText(self._mecab_args),
                     'segment')
    tokenized = step(segmented, 'LookUpTokenIds',
                     LookUpTokenIds(self._bundle_path), 'lookup')
    truncated = step(tokenized, 'TruncateTokenIds',
                     TruncateTokenIds(self._maxlen, self._truncating),
                     'truncate')
    ids = (
        truncated
        | 'SortByLength' >> beam.ParDo(
            SortByLength(_keyed_document_length,
                         buffer_tokens=self._sort_buffer_tokens))
        | 'SplitMetadata' >> beam.Map(_split_metadata))
    # RunInference sees (id, ids); the metadata rides along in the key.
    predictions, dlq = (
        ids
        | 'RunInference' >> RunInference(KeyedModelHandler(
            self._handler)).with_exception_handling())
    errors.append(dlq.failed_inferences
                  | 'RunInferenceErrors' >> beam.ParDo(
                      _ToErrorRecord('inference', batched=True)))
    scores = predictions | 'ToScoreRecord' >> beam.Map(_to_record)
    all_errors = errors | 'FlattenErrors' >> beam.Flatten()
    return ScoreDocumentsResult(scores, all_errors)


def _keyed_document_length(element: tuple[Any, Any]) -> int:
  return len(element[1].ids)


def _split_metadata(element: tuple[Any, Any]) -> tuple[tuple, np.ndarray]:
  doc_id, doc = element
  return (doc_id, doc.n_tokens, doc.truncated), doc.ids


def _to_record(element: tuple[tuple, Any]) -> dict:
  (doc_id, n_tokens, truncated), prediction = element
  return {
      'id': doc_id,
      'scores': [float(x) for x in prediction.inference],
      'n_tokens': int(n_tokens),
      'truncated': bool(truncated),
  }
