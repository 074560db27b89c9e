"""The id and text policy, the same for records of every input format.

Why this module exists: JSONL, CSV, Parquet and text records are read by
different code, but what makes a record good or an error must not depend on
its format. An id is a non-empty string or an integer within 64 bits;
anything else (missing, null, empty, float, bool, object, list, a string
that is not valid Unicode) is an error that names the type. Text must be a
string of valid Unicode. A bad record becomes a `ReadError`, never a failed
job.
"""

import re
import typing
from typing import Any, Optional, Sequence, Union

from pipeline.io.formats import INT64_RANGE
from transforms.records import SCORE_FIELDS

_SURROGATE = re.compile('[\ud800-\udfff]')


class ReadError(typing.NamedTuple):
  """A record that could not be read: where, and why."""
  source: str
  reason: str
  doc_id: Any = None

  def as_record(self) -> dict[str, Any]:
    return {'id': self.doc_id if self.doc_id is not None else self.source,
            'source': self.source, 'stage': 'read', 'reason': self.reason}


def _describe(value: Any) -> str:
  """A short, always-encodable rendering of a bad value for an error."""
  text = ascii(value)
  return text if len(text) <= 60 else text[:57] + '...'


def has_surrogate(text: str) -> bool:
  """Whether ``text`` holds an unpaired surrogate (not valid Unicode)."""
  return _SURROGATE.search(text) is not None


def unicode_problem(text: str) -> Optional[str]:
  match = _SURROGATE.search(text)
  if match is None:
    return None
  return (f'an unpaired surrogate {ascii(match.group())[1:-1]} at character '
          f'{match.start()}, which is not valid Unicode')


MAX_KEPT_DEPTH = 64
"""How deeply a kept value may nest lists and objects."""


def _kept_value_problem(value: Any) -> Optional[str]:
  """Why a kept value (a JSON value) cannot be carried, or None.

  A string with an unpaired surrogate cannot be encoded as UTF-8, so Beam's
  coders and every writer would fail on it; lists and objects nested deeper
  than `MAX_KEPT_DEPTH` would overflow the writers' recursion. Walks with a
  stack, as JSON may nest deeper than Python recurses.
  """
  stack = [(value, 0)]
  while stack:
    item, depth = stack.pop()
    if isinstance(item, str):
      problem = unicode_problem(item)
      if problem:
        return problem
    elif isinstance(item, (dict, list)):
      if depth >= MAX_KEPT_DEPTH:
        return (f'lists or objects nested more than {MAX_KEPT_DEPTH} '
                f'levels deep')
      if isinstance(item, dict):
        stack.extend((key, depth + 1) for key in item)
        item = item.values()
      stack.extend((child, depth + 1) for child in item)
  return None


class RecordRules:
  """The id and text policy, applied to records of every format.

  Args:
    id_field: the field holding the id.
    text_field: the field holding the text.
    keep_fields: fields to carry along with the id and the text; a record
      without one of them simply lacks it (the writers write null or empty).
    keep_all_fields: carry every field of the record.

  With neither, good records are ``(id, text)`` pairs (the fast path); with
  either, they are dicts ``{id_field: id, text_field: text, **kept}``. A kept
  value holding an unpaired surrogate (JSON can spell one, ``"\\ud800"``)
  makes the record an error naming the field, as it does for the id and the
  text: no encoder or writer could write it. So does one nesting lists or
  objects deeper than `MAX_KEPT_DEPTH`. With ``keep_all_fields`` a
  record with a field named as one of `SCORE_FIELDS` (or named ``id``
  while the id is another field) is an error too, since the output would
  overwrite it.
  """
  def __init__(self, id_field: str = 'id', text_field: str = 'text', *,
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False):
    self.id_field = id_field
    self.text_field = text_field
    self.keep_fields = tuple(keep_fields or ())
    self.keep_all_fields = bool(keep_all_fields)
    self._taken = SCORE_FIELDS + (('id',) if id_field != 'id' else ())

  @property
  def keeps(self) -> bool:
    """Whether good records are dicts (some field is kept) or pairs."""
    return self.keep_all_fields or bool(self.keep_fields)

  def columns(self, names: Sequence[str]) -> Optional[list[str]]:
    """The columns to read of a file with the fields ``names``."""
    if self.keep_all_fields:
      return list(names)
    wanted = (self.id_field, self.text_field) + self.keep_fields
    return [c for c in dict.fromkeys(wanted) if c in names]

  def text_record(self, source: str, text: str) -> Union[tuple[str, str],
                                                          dict[str, str]]:
    """A line of a text file: ``(FILE:LINE, text)``, or the dict form."""
    if not self.keeps:
      return source, text
    return {self.id_field: source, self.text_field: text}

  def _kept(self, record: dict, doc_id: Any, text: str, source: str
            ) -> Union[dict[str, Any], ReadError]:
    if self.keep_all_fields:
      taken = [k for k in record if k in self._taken]
      if taken:
        return ReadError(
            source, f'the record has the field {taken[0]!r}, which the '
            f'output uses for the scores or the id; with --keep_all_fields '
            f'it would be overwritten. Rename it, or name the fields to keep '
            f'with --keep_fields.', doc_id)
      kept = dict(record)
    else:
      kept = {k: record[k] for k in self.keep_fields if k in record}
    for name, value in kept.items():
      problem = unicode_problem(name)
      if problem:
        return ReadError(source, f'the name of the field {_describe(name)} '
                         f'holds {problem}; no output format can write it.',
                         doc_id)
      problem = (None if name in (self.id_field, self.text_field)
                 else _kept_value_problem(value))
      if problem:
        return ReadError(source, f'the kept field {_describe(name)} holds '
                         f'{problem}; no output format can write it.', doc_id)
    if self.keep_all_fields:
      return kept  # The record as it is, in its order.
    return {self.id_field: doc_id, self.text_field: text, **kept}

  def check_id(self, doc_id: Any) -> Optional[str]:
    """Why ``doc_id`` is not an acceptable id, or None if it is."""
    name = f'the id field {self.id_field!r}'
    if doc_id is None:
      return f'{name} is missing or null'
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
      return (f'{name} must be a string or an integer; received '
              f'{type(doc_id).__name__} {_describe(doc_id)}')
    if isinstance(doc_id, int) and not INT64_RANGE[0] <= doc_id <= INT64_RANGE[1]:
      return (f'{name} must be an integer within 64 bits; received '
              f'{_describe(doc_id)}')
    if isinstance(doc_id, str):
      if not doc_id:
        return f'{name} is empty'
      problem = unicode_problem(doc_id)
      if problem:
        return f'{name} holds {problem}'
    return None

  def apply(self, record: Any, source: str,
            fields: Optional[list[str]] = None
            ) -> Union[tuple[Any, str], dict[str, Any], ReadError]:
    """``(id, text)`` for a good record, else the `ReadError` saying why.

    When fields are kept, a good record is the dict described in the class
    docstring instead of the pair.

    Args:
      record: the record, a dict.
      source: where it was read (``FILE:LINE``).
      fields: the fields its file has, for messages (default: its keys).
    """
    if not isinstance(record, dict):
      return ReadError(source, f'expected a JSON object; received '
                       f'{type(record).__name__}.')
    fields = ', '.join(repr(k) for k in (fields or list(record))[:20])
    doc_id = record.get(self.id_field)
    problem = self.check_id(doc_id)
    if problem:
      if doc_id is None:
        problem += f' (the record has the fields {fields or "none"}; choose ' \
                   f'the id field with --id_field)'
      return ReadError(source, problem + '.')
    if self.text_field not in record:
      return ReadError(
          source, f'the text field {self.text_field!r} is missing (the '
          f'record has the fields {fields}; choose the text field with '
          f'--text_field).', doc_id)
    text = record[self.text_field]
    if not isinstance(text, str):
      return ReadError(source, f'the text field {self.text_field!r} must be '
                       f'a string; received {type(text).__name__}.', doc_id)
    problem = unicode_problem(text)
    if problem:
      return ReadError(source, f'the text field {self.text_field!r} holds '
                       f'{problem}.', doc_id)
    if self.keeps:
      return self._kept(record, doc_id, text, source)
    return doc_id, text
