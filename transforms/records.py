"""Records in, the same records out: dicts and schema'd Rows through the scorer.

ETL pipelines hold records with many fields (a title, a URL, a date) and want
the scores added to each record. Joining scores back by id would shuffle the
whole corpus, so the record itself rides along with the document instead:
`ExtractText` turns a record into ``(Carried(id, record), text)``, the steps
of ``ScoreDocuments`` pass the key through untouched (as they pass an id),
and `scored_record` rebuilds the record with its scores at the end. A record
that fails anywhere leaves with its ``Carried`` key, so its error record holds
the whole record.

Three forms are accepted, told apart per element:

* ``(id, text)`` pairs (any tuple or list that is not a named tuple): passed
  through unchanged; output and error records keep their historic shape.
* dicts (any ``Mapping``): the output is a new dict with the record's fields
  followed by the score fields.
* schema'd rows: ``beam.Row``, named tuples (what Beam's schema'd sources
  such as ``ReadFromCsv`` yield) and dataclass instances. The output is a
  ``beam.Row``; when the input PCollection has a schema, the output carries
  one too (`scored_row_type`).
"""

import dataclasses
import logging
import typing
from collections.abc import Mapping
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.typehints import schemas
from apache_beam.typehints.row_type import RowTypeConstraint

_LOGGER = logging.getLogger(__name__)

SCORES_AS = ('list', 'columns')
"""How scores are added: one ``scores`` list, or one field per output."""
COUNT_FIELDS = ('n_tokens', 'truncated')
"""The fields added after the scores, in every form."""
SCORE_FIELDS = ('scores',) + COUNT_FIELDS
"""The fields added with ``scores_as='list'``: no input field may be named
so (with ``'columns'`` the outputs' names take the place of ``scores``)."""
MODEL_ID_FIELD = 'model_id'
"""With model updates on, the field after the score fields naming the bundle
that scored the record (its path)."""

DICT = 'dict'
ROW = 'row'


class RecordError(ValueError):
  """A record cannot be scored as it is; the message says what to change."""
  def __repr__(self) -> str:
    # Beam's exception handling records repr(exception); keep it readable.
    return str(self)


class Carried:
  """A record on its way through ``ScoreDocuments``, in the place of an id.

  Attributes:
    id: the value of the record's id field, or None without an id field.
    form: ``dict`` or ``row``: what the output record is built as.
    record: the record's fields, in their order (the original dict for the
      dict form).
  """
  __slots__ = ('id', 'form', 'record')

  def __init__(self, doc_id: Any, form: str, record: Mapping):
    self.id = doc_id
    self.form = form
    self.record = record

  def __reduce__(self):
    return Carried, (self.id, self.form, self.record)

  def __repr__(self):
    return f'Carried(id={self.id!r}, form={self.form!r})'


def record_fields(element: Any) -> Optional[tuple[str, Mapping]]:
  """The form and fields of a dict or row record; None for anything else.

  Args:
    element: an input element of ``ScoreDocuments``.

  Returns:
    ``('dict', the dict itself)``, ``('row', {field: value} in field
    order)`` for a ``beam.Row``, a named tuple or a dataclass instance, or
    None for pairs and other values.
  """
  if isinstance(element, beam.Row):
    return ROW, element.as_dict()
  if isinstance(element, tuple) and hasattr(element, '_fields'):
    return ROW, element._asdict()
  if dataclasses.is_dataclass(element) and not isinstance(element, type):
    return ROW, {f.name: getattr(element, f.name)
                 for f in dataclasses.fields(element)}
  if isinstance(element, Mapping):
    return DICT, element
  return None


def score_field_names(output_names: Sequence[str], scores_as: str, *,
                      model_id: bool = False) -> list[str]:
  """The fields ``ScoreDocuments`` adds to a record, in order.

  Args:
    output_names: the bundle's output names.
    scores_as: ``list`` or ``columns``.
    model_id: model updates are on: ``model_id`` follows the other fields.
  """
  return [name for name, _ in score_field_types(output_names, scores_as,
                                                model_id=model_id)]


def score_field_types(output_names: Sequence[str], scores_as: str, *,
                      model_id: bool = False) -> list[tuple[str, type]]:
  """The added fields with their Python types (for schemas).

  Args:
    output_names: the bundle's output names.
    scores_as: ``list`` or ``columns``.
    model_id: model updates are on: ``(model_id, str)`` comes last.
  """
  if scores_as == 'columns':
    scores = [(name, float) for name in output_names]
  else:
    scores = [('scores', typing.List[float])]
  added = scores + [('n_tokens', int), ('truncated', bool)]
  if model_id:
    added.append((MODEL_ID_FIELD, str))
  return added


def schema_fields(element_type: Any) -> Optional[list[tuple[str, Any]]]:
  """The ``(name, type)`` fields of a schema'd element type, else None."""
  if element_type is None:
    return None
  try:
    return list(schemas.named_fields_from_element_type(element_type))
  except (TypeError, ValueError, KeyError):
    return None


def scored_row_type(element_type: Any, output_names: Sequence[str],
                    scores_as: str, *, text_field: str,
                    id_field: Optional[str],
                    model_id: bool = False) -> Optional[RowTypeConstraint]:
  """The Beam schema of scored rows, from the schema of the input rows.

  Args:
    element_type: the input PCollection's element type.
    output_names: the bundle's output names.
    scores_as: ``list`` or ``columns``.
    text_field: the field holding the text.
    id_field: the field holding the id, or None.
    model_id: model updates are on: the rows also get ``model_id: str``.

  Returns:
    The input's fields followed by the score fields, or None when the input
    has no schema (pairs, dicts, or rows of an unknown type).

  Raises:
    ValueError: the schema lacks the text or id field, already has a field
      the scores would be written to, or an output name cannot be a field.
  """
  fields = schema_fields(element_type)
  if fields is None:
    return None
  names = [name for name, _ in fields]
  for role, field in (('text_field', text_field), ('id_field', id_field)):
    if field is not None and field not in names:
      raise ValueError(
          f'{role}={field!r} is not a field of the input rows; their fields '
          f'are {names}. Pass {role}= naming one of them.')
  added = score_field_types(output_names, scores_as, model_id=model_id)
  clash = [name for name, _ in added if name in names]
  if clash:
    raise ValueError(
        f'the input rows already have the field(s) {clash}, which the scores '
        f'would overwrite; rename or drop them before scoring.')
  bad = [name for name, _ in added if not name.isidentifier()]
  if bad:
    raise ValueError(
        f'the bundle output name(s) {bad} cannot be Row fields; use '
        f"scores_as='list' or rename the outputs.")
  return RowTypeConstraint.from_fields(fields + added)


class ExtractText(beam.DoFn):
  """Takes the text out of a record and puts the record in the id's place.

  Pairs pass through unchanged. A dict or row record becomes
  ``(Carried(id, form, fields), text)``. A record without the text field (or
  without the id field, when one is named), or one that already has a field
  the scores would overwrite, raises `RecordError` naming the field and the
  fields the record has.

  Args:
    text_field: the field holding the text.
    id_field: the field holding the id; None when records have no id.
    added_fields: the fields scoring adds, which a record must not have.
  """
  def __init__(self, *, text_field: str, id_field: Optional[str],
               added_fields: Sequence[str]):
    self._text_field = text_field
    self._id_field = id_field
    self._added = tuple(added_fields)

  def process(self, element: Any) -> Iterator[tuple[Any, Any]]:
    found = record_fields(element)
    if found is None:
      if isinstance(element, (tuple, list)):
        yield element
        return
      raise RecordError(
          f'expected an (id, text) pair, a dict or a schema\'d beam.Row; '
          f'received {type(element).__name__}.')
    form, fields = found
    for role, field in (('text_field', self._text_field),
                        ('id_field', self._id_field)):
      if field is not None and field not in fields:
        raise RecordError(
            f'the record has no field {field!r} ({role}); its fields are '
            f'{list(fields)}.')
    clash = [name for name in self._added if name in fields]
    if clash:
      raise RecordError(
          f'the record already has the field(s) {clash}, which the scores '
          f'would overwrite; its fields are {list(fields)}. Rename or drop '
          f'them before scoring.')
    doc_id = fields[self._id_field] if self._id_field is not None else None
    yield Carried(doc_id, form, fields), fields[self._text_field]


def error_record(item: Any, stage: str, reason: str, *, raw: bool,
                 batched: bool, id_field: Optional[str]) -> dict:
  """The error record for one element that failed at ``stage``.

  Pairs give ``{"id", "stage", "reason"}`` as they always have. Dict and
  row records add ``record``: the record's fields, unchanged, so it can be
  repaired and scored again (for dicts this is the original dict, so it is
  JSON-serialisable when the input was).

  Args:
    item: the failed element: a raw input element when ``raw``, else a
      ``(key, value)`` pair whose key is an id, a `Carried`, or for batched
      (inference) failures ``(id or Carried, n_tokens, truncated, timestamp)``.
    stage: the step that failed.
    reason: why.
    raw: ``item`` is an input element as the user gave it.
    batched: ``item`` comes from a failed inference batch.
    id_field: the records' id field, or None.
  """
  if raw:
    found = record_fields(item)
    if found is not None:
      _, fields = found
      doc_id = fields.get(id_field) if id_field is not None else None
      return {'id': doc_id, 'stage': stage, 'reason': reason,
              'record': fields}
  key = item
  if isinstance(key, tuple) and key:
    key = key[0]
  if batched and isinstance(key, tuple) and key:
    key = key[0]  # RunInference keys are (id, n_tokens, truncated, ts).
  if isinstance(key, Carried):
    return {'id': key.id, 'stage': stage, 'reason': reason,
            'record': key.record}
  return {'id': key, 'stage': stage, 'reason': reason}


def scored_record(key: Any, scores: Sequence[float], n_tokens: int,
                  truncated: bool, *, output_names: Sequence[str],
                  scores_as: str, model_id: Optional[str] = None) -> Any:
  """A record with its scores: a dict, or a ``beam.Row`` for row input.

  Args:
    key: the document's id (pair form) or its `Carried` record.
    scores: the scores, in the bundle's output order.
    n_tokens: ids before truncation.
    truncated: whether ids were cut to maxlen.
    output_names: the bundle's output names.
    scores_as: ``list`` (one ``scores`` field) or ``columns`` (a field per
      output).
    model_id: with model updates on, the path of the bundle that scored the
      record: added as ``model_id`` after the other fields. None adds
      nothing.
  """
  values = [float(x) for x in scores]
  if scores_as == 'columns':
    added = dict(zip(output_names, values))
  else:
    added = {'scores': values}
  added['n_tokens'] = int(n_tokens)
  added['truncated'] = bool(truncated)
  if model_id is not None:
    added[MODEL_ID_FIELD] = str(model_id)
  if not isinstance(key, Carried):
    return {'id': key, **added}
  fields = {**key.record, **added}
  if key.form == ROW:
    return beam.Row(**fields)
  return fields
