"""``ScoreDocuments``: the composite transform from documents to scores.

Documents come as ``(id, text)`` pairs, dicts or schema'd ``beam.Row``s
(`transforms.records`); each comes back as the same record with its scores.
Steps, each with its own label::

  ExtractText -> SegmentText -> LookUpTokenIds -> TruncateTokenIds
    -> SortByLength -> SplitMetadata
    -> RunInference(KeyedModelHandler(BundleModelHandler))
    -> CheckFiniteScores -> ToScoreRecord

or, with ``max_batch_duration_secs`` (streaming), ``SplitMetadata ->
CutBatches -> RunInference`` of the batches `CutBatches` cut (RunInference's
own batching skipped) in place of the sorting and the inference.

A dict or row record rides through every step in the place of the id (and in
RunInference's key), so no join is needed to restore its fields.

With ``model_updates`` (a PCollection of bundle paths), the bundle is chosen
per document before the ids are looked up (`transforms.refresh`)::

  ExtractText -> SegmentText -> AssignBundles -> LookUpTokenIds
    -> TruncateTokenIds (the document's bundle) -> SortByLength
    -> SplitMetadata
    -> RunInference(KeyedModelHandler(RefreshingBundleModelHandler))
    -> ToScoreRecord (with model_id)

Every step runs with Beam's ``with_exception_handling``; a record that fails
anywhere leaves through the ``errors`` output as ``{"id", "stage",
"reason"}``, plus ``record`` (the whole input record) for dicts and rows. A
batch whose inference raises sends all its records there, and the rest of the
corpus is still scored.
"""

import logging
from typing import Any, Callable, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.transforms import window

from model.bundle import load_bundle
from transforms.batching import DEFAULT_BUFFER_TOKENS, CutBatches, SortByLength
from transforms.handler import (DEFAULT_BATCH_TOKENS, BundleIds,
                                BundleModelHandler,
                                RefreshingBundleModelHandler, TFThreads,
                                set_tf_threads)
from transforms.metrics import NAMESPACE
from transforms.records import (COUNT_FIELDS, MODEL_ID_FIELD, SCORES_AS,
                                ExtractText, error_record,
                                score_field_names, score_field_types,
                                scored_record, scored_row_type)
from transforms.refresh import AssignBundles, CarryWindows
from transforms.tokenize import (LookUpTokenIds, LookUpTokenIdsByBundle,
                                 SegmentText, TruncateTokenIds,
                                 TruncateTokenIdsByBundle)

_LOGGER = logging.getLogger(__name__)


def _reason(exc_info: Any) -> str:
  """The readable part of Beam's ``(type, repr(exception), traceback)``."""
  if isinstance(exc_info, tuple) and len(exc_info) >= 2:
    return str(exc_info[1])
  return str(exc_info)


class _ToErrorRecord(beam.DoFn):
  """Turns a dead-letter element into error records (`error_record`).

  Args:
    stage: the step that failed.
    batched: the failed element is a batch of ``(key, ...)`` pairs.
    raw: the failed element is an input element as the user gave it.
    id_field: the records' id field, or None.
  """
  def __init__(self, stage: str, *, batched: bool = False, raw: bool = False,
               id_field: Optional[str] = None):
    self._stage = stage
    self._batched = batched
    self._raw = raw
    self._id_field = id_field
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
      record = error_record(item, self._stage, reason[:2000], raw=self._raw,
                            batched=self._batched, id_field=self._id_field)
      yield _restamped(record, item[0]) if self._batched else record


class _CheckFiniteScores(beam.DoFn):
  """Sends predictions holding NaN or infinity to the errors.

  No output format can hold them faithfully (strict JSON has neither), and
  a model that returns them for a document has failed on that document.
  """
  NON_FINITE = 'non_finite'

  def __init__(self, id_field: Optional[str]):
    self._id_field = id_field
    self._errors = Metrics.counter(NAMESPACE, 'errors')

  def process(self, element):
    scores = np.asarray(element[1].inference, dtype=np.float64)
    if np.isfinite(scores).all():
      yield element
      return
    self._errors.inc()
    bad = sorted({str(x) for x in scores[~np.isfinite(scores)]})
    yield beam.pvalue.TaggedOutput(self.NON_FINITE, _restamped(error_record(
        element, 'inference', f'the model returned non-finite scores '
        f'({", ".join(bad)}) for this document.', raw=False, batched=True,
        id_field=self._id_field), element[0]))


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
  """Scores documents with a bundle: pairs, dicts or schema'd Rows.

  Each input comes back as itself plus its scores:

  * ``(id, text)`` pairs give ``{"id", "scores": [floats in the bundle's
    output order], "n_tokens", "truncated"}``.
  * dicts give a new dict: the record's fields, unchanged and in order,
    then ``scores``, ``n_tokens`` and ``truncated``.
  * schema'd rows (``beam.Row``, named tuples such as ``ReadFromCsv``
    yields, dataclasses) give a ``beam.Row`` with the same fields. When the
    input PCollection has a Beam schema, the output has one too: the input's
    fields followed by the score fields, so ``beam.dataframe``,
    ``WriteToParquet`` or ``WriteToBigQuery`` need no schema written by hand.

  With ``scores_as='columns'`` the scores are one float field per output,
  named as `output_names`, instead of one ``scores`` list.

  With ``model_updates``, a PCollection of bundle paths that arrive over
  time (`transforms.refresh.WatchBundles` watches a pattern for them), each
  new bundle is validated (`transforms.refresh.check_bundle_update`) and
  then scores the documents that reach the scorer after it; each record
  gets a last field, ``model_id``: the path of the bundle that scored it. A
  bundle that fails validation, or whose outputs or MeCab arguments differ
  from the running one's, is refused with a warning naming it and why, and
  the previous bundle keeps scoring. Every document is scored exactly once,
  whatever the updates. Meant for streaming pipelines: in a batch pipeline
  the order between documents and updates is undefined.

  ``n_tokens`` counts the document's ids before truncation; ``truncated``
  says whether they were cut to the bundle's maxlen.

  Records that fail go to ``errors``: ``{"id", "stage", "reason"}`` for
  pairs; for dicts and rows also ``record``, the record's fields unchanged
  (the original dict for dicts), so it can be repaired and scored again. A
  dict or row without the text field (or the id field, when one is named)
  fails at stage ``extract`` with a reason naming the field and the fields
  the record has. Every input ends in exactly one of the two outputs.

  The bundle is loaded and validated (files, checksums, a probe through the
  model, the MeCab dictionary) when the transform is constructed, so a bad
  bundle fails before any worker starts.

  Example::

    scores, errors = docs | ScoreDocuments('gs://bucket/bundle')
    scored, errors = articles | ScoreDocuments(
        'gs://bucket/bundle', text_field='body', id_field='url',
        scores_as='columns')

  Args:
    bundle_path: the bundle directory on any Beam filesystem.
    text_field: the field of dict and row records that holds the text.
    id_field: the field of dict and row records that identifies them in
      ``errors``; None (the default) when records have no id. A record
      without a named id field is an error.
    scores_as: ``'list'`` (one ``scores`` field) or ``'columns'`` (one float
      field per bundle output, named after `output_names`).
    batch_tokens: token budget of one padded inference batch.
    sort_buffer_tokens: tokens held to group documents by length.
    inference_fn: optional ``fn(model, padded_ids) -> scores`` replacing the
      SavedModel call (see `BundleModelHandler`).
    validate: check the bundle now (on by default).
    probe_model: with ``validate``, also load the SavedModel now and call it
      on a probe, which imports TensorFlow here. Turn it off where the
      pipeline is only built here and scored in other processes (worker
      processes, a cluster): each worker probes the model as it loads it,
      and the checksums are still verified here.
    tf_threads: TensorFlow threads per worker process (0: TF's default), or
      a `transforms.handler.CoreShare` of each worker machine's cores; see
      `BundleModelHandler`.
    scoring_function: ``'auto'`` (the faster `model.lstm_scorer` where it
      applies and agrees with the SavedModel's signature) or
      ``'signature'``; see `BundleModelHandler`.
    max_batch_duration_secs: for streaming pipelines: the longest a
      document waits for its batch while others keep arriving; a bundle's
      end also sends what waits. Documents are then sorted and batched in
      one step (`transforms.batching.CutBatches`) instead of RunInference's
      batching, which holds them until a batch is full. None (the
      default): batch jobs' full batches.
    model_updates: optional PCollection of bundle paths (strings) that
      replace ``bundle_path`` as they arrive; None (the default) scores
      with ``bundle_path`` only, and records have no ``model_id``. Each
      update is checked in full on the worker that receives it, whatever
      ``validate`` and ``probe_model`` say.
    label: the transform's label.

  Raises:
    ValueError: ``scores_as`` is unknown, or an output name would collide
      with ``id``, ``n_tokens`` or ``truncated`` (or, with
      ``model_updates``, ``model_id``) as a column.
    TypeError: ``model_updates`` is not a PCollection.
  """
  def __init__(self,
               bundle_path: str,
               *,
               text_field: str = 'text',
               id_field: Optional[str] = None,
               scores_as: str = 'list',
               batch_tokens: int = DEFAULT_BATCH_TOKENS,
               sort_buffer_tokens: int = DEFAULT_BUFFER_TOKENS,
               inference_fn: Optional[Callable] = None,
               validate: bool = True,
               probe_model: bool = True,
               tf_threads: TFThreads = 0,
               scoring_function: str = 'auto',
               max_batch_duration_secs: Optional[float] = None,
               model_updates: Optional[beam.PCollection] = None,
               label: Optional[str] = None):
    super().__init__(label)
    if max_batch_duration_secs is not None and not (
        isinstance(max_batch_duration_secs, (int, float)) and
        not isinstance(max_batch_duration_secs, bool) and
        max_batch_duration_secs > 0):
      raise ValueError(
          f'max_batch_duration_secs must be a positive number of seconds or '
          f'None; received {max_batch_duration_secs!r}.')
    if model_updates is not None and not isinstance(model_updates,
                                                    beam.PCollection):
      raise TypeError(
          f'model_updates must be a PCollection of bundle paths; received '
          f'{type(model_updates).__name__}.')
    if scores_as not in SCORES_AS:
      raise ValueError(
          f'scores_as must be one of {list(SCORES_AS)}; received '
          f'{scores_as!r}.')
    if not isinstance(text_field, str) or not text_field:
      raise ValueError(
          f'text_field must be a field name; received {text_field!r}.')
    if validate and probe_model:
      # The probe starts TensorFlow's runtime, whose thread pools cannot be
      # sized after; where this process also scores (an in-process run),
      # they are sized first.
      set_tf_threads(tf_threads)
    bundle = load_bundle(bundle_path, check_model=validate,
                         probe_model=probe_model)
    if validate:
      bundle.check_environment()
    self._bundle_path = bundle_path
    self._mecab_args = bundle.mecab_args
    self._maxlen = bundle.maxlen
    self._truncating = bundle.truncating
    self._output_names = bundle.output_names
    if scores_as == 'columns':
      added = {'id', *COUNT_FIELDS}
      if model_updates is not None:
        added.add(MODEL_ID_FIELD)
      reserved = sorted(added & set(self._output_names))
      if reserved:
        raise ValueError(
            f'the bundle has outputs named {reserved}, which cannot be '
            f"score columns; use scores_as='list'.")
    self._text_field = text_field
    self._id_field = id_field
    self._scores_as = scores_as
    self._batch_tokens = batch_tokens
    self._sort_buffer_tokens = sort_buffer_tokens
    self._max_wait_secs = max_batch_duration_secs
    self._row_length = None if bundle.masked else bundle.maxlen
    self._model_updates = model_updates
    handler = (BundleModelHandler if model_updates is None
               else RefreshingBundleModelHandler)
    self._handler = handler(
        bundle_path, batch_tokens=batch_tokens, inference_fn=inference_fn,
        tf_threads=tf_threads, scoring_function=scoring_function)

  @property
  def output_names(self) -> list[str]:
    """The bundle's output names, in the order of the scores."""
    return list(self._output_names)

  @property
  def mecab_args(self) -> str:
    """The MeCab arguments documents are segmented with (the bundle's)."""
    return self._mecab_args

  @property
  def score_fields(self) -> list[tuple[str, type]]:
    """The fields added to each record, with their Python types.

    ``[("scores", List[float]), ("n_tokens", int), ("truncated", bool)]``,
    or with ``scores_as='columns'`` one ``(name, float)`` per output in
    place of ``scores``; with ``model_updates``, ``("model_id", str)``
    last. Writers can build their schemas from it.
    """
    return score_field_types(self._output_names, self._scores_as,
                             model_id=self._refreshing)

  @property
  def _refreshing(self) -> bool:
    return self._model_updates is not None

  @property
  def _split_metadata(self) -> Callable:
    return _split_metadata_by_bundle if self._refreshing else _split_metadata

  def _score_sorted(self, docs):
    """Batch jobs: length-sorted, then RunInference's batching."""
    # RunInference sees (key, ids); the metadata rides along in the key, and
    # for dicts and rows the key holds the whole record.
    predictions, dlq = (
        docs
        | 'SortByLength' >> beam.ParDo(
            SortByLength(_keyed_document_length,
                         buffer_tokens=self._sort_buffer_tokens))
        | 'SplitMetadata' >> beam.Map(self._split_metadata)
        | 'RunInference' >> RunInference(KeyedModelHandler(
            self._handler)).with_exception_handling())
    return predictions, dlq.failed_inferences

  def _score_cut_batches(self, docs):
    """Streaming, with a wait bound: batches cut by `CutBatches`."""
    predictions, dlq = (
        docs
        | 'SplitMetadata' >> beam.Map(self._split_metadata)
        | 'CutBatches' >> beam.ParDo(CutBatches(
            batch_tokens=self._batch_tokens, max_wait_secs=self._max_wait_secs,
            buffer_tokens=self._sort_buffer_tokens,
            row_length=None if self._refreshing else self._row_length,
            length_fn=_bundle_ids_length if self._refreshing else len))
        | 'RunInference' >> RunInference(KeyedModelHandler(
            self._handler).with_no_batching()).with_exception_handling())
    return predictions, dlq.failed_inferences

  def expand(self, docs):
    # Rows with a schema: check the fields now, and give the output a schema.
    row_type = scored_row_type(
        docs.element_type, self._output_names, self._scores_as,
        text_field=self._text_field, id_field=self._id_field,
        model_id=self._refreshing)
    windowing = docs.windowing
    errors = []

    def step(pcoll, label, dofn, stage, **error_args):
      good, bad = (
          pcoll
          | label >> beam.ParDo(dofn).with_exception_handling(
              main_tag='ok', dead_letter_tag='failed'))
      errors.append(bad | f'{label}Errors' >> beam.ParDo(
          _ToErrorRecord(stage, id_field=self._id_field, **error_args)))
      return good

    extracted = step(
        docs, 'ExtractText',
        ExtractText(text_field=self._text_field, id_field=self._id_field,
                    added_fields=score_field_names(
                        self._output_names, self._scores_as,
                        model_id=self._refreshing)),
        'extract', raw=True)
    segmented = step(extracted, 'SegmentText', SegmentText(self._mecab_args),
                     'segment')
    if self._refreshing:
      # The windows of the documents go back through a window function of
      # their own (`transforms.refresh.RestoreWindows`); the errors before
      # that point take the same one, so all errors flatten alike.
      errors[:] = [errors_so_far | f'{name}Windows' >> CarryWindows(windowing)
                   for name, errors_so_far in zip(('ExtractText',
                                                   'SegmentText'), errors)]
      assigned = segmented | 'AssignBundles' >> AssignBundles(
          self._model_updates, self._bundle_path,
          output_names=self._output_names, mecab_args=self._mecab_args,
          batch_tokens=self._batch_tokens)
      tokenized = step(assigned, 'LookUpTokenIds', LookUpTokenIdsByBundle(),
                       'lookup')
      truncated = step(tokenized, 'TruncateTokenIds',
                       TruncateTokenIdsByBundle(), 'truncate')
    else:
      tokenized = step(segmented, 'LookUpTokenIds',
                       LookUpTokenIds(self._bundle_path), 'lookup')
      truncated = step(tokenized, 'TruncateTokenIds',
                       TruncateTokenIds(self._maxlen, self._truncating),
                       'truncate')
    if self._max_wait_secs is None:
      predictions, failed = self._score_sorted(truncated)
    else:
      predictions, failed = self._score_cut_batches(truncated)
    errors.append(failed
                  | 'RunInferenceErrors' >> beam.ParDo(
                      _ToErrorRecord('inference', batched=True,
                                     id_field=self._id_field)))
    finite, non_finite = (
        predictions
        | 'CheckFiniteScores' >> beam.ParDo(
            _CheckFiniteScores(self._id_field)).with_outputs(
                _CheckFiniteScores.NON_FINITE, main='finite'))
    errors.append(non_finite)
    to_record = beam.Map(_to_record, output_names=self.output_names,
                         scores_as=self._scores_as,
                         with_model_id=self._refreshing)
    if row_type is not None:
      to_record = to_record.with_output_types(row_type)
    scores = finite | 'ToScoreRecord' >> to_record
    all_errors = errors | 'FlattenErrors' >> beam.Flatten()
    return ScoreDocumentsResult(scores, all_errors)


def _bundle_ids_length(example: BundleIds) -> int:
  return len(example.ids)


def _keyed_document_length(element: tuple[Any, Any]) -> int:
  return len(element[1].ids)


def _split_metadata(element: tuple[Any, Any],
                    timestamp=beam.DoFn.TimestampParam
                    ) -> tuple[tuple, np.ndarray]:
  # The document's timestamp rides in the key: batching stamps a batch with
  # its window's end, and each record gets its own back (`_restamped`).
  doc_id, doc = element
  return (doc_id, doc.n_tokens, doc.truncated, timestamp), doc.ids


def _split_metadata_by_bundle(element: tuple[Any, Any],
                              timestamp=beam.DoFn.TimestampParam
                              ) -> tuple[tuple, BundleIds]:
  # As `_split_metadata`; the example also names the document's bundle.
  doc_id, doc = element
  return ((doc_id, doc.n_tokens, doc.truncated, timestamp),
          BundleIds(doc.bundle_path, doc.ids))


def _restamped(record: Any, key: tuple) -> Any:
  """``record`` with the timestamp its document had before batching."""
  return window.TimestampedValue(record, key[3])


def _to_record(element: tuple[tuple, Any], *, output_names: list[str],
               scores_as: str, with_model_id: bool = False) -> Any:
  key, prediction = element
  doc_key, n_tokens, truncated, _ = key
  return _restamped(
      scored_record(doc_key, prediction.inference, n_tokens, truncated,
                    output_names=output_names, scores_as=scores_as,
                    model_id=(prediction.model_id if with_model_id
                              else None)), key)
