"""The record forms of ScoreDocuments, step by step, without a pipeline."""

import dataclasses
import json
import typing

import apache_beam as beam
import pytest
from apache_beam.typehints import schemas
from apache_beam.typehints.row_type import RowTypeConstraint
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.records import (Carried, ExtractText, RecordError,
                                error_record, record_fields, score_field_names,
                                scored_record, scored_row_type)

NAMES = ['score_0', 'score_1', 'score_2']


class Article(typing.NamedTuple):
  id: str
  title: str
  text: str


@dataclasses.dataclass
class Note:
  id: str
  text: str
  stars: int


def _extract(element, *, text_field='text', id_field=None, scores_as='list'):
  dofn = ExtractText(text_field=text_field, id_field=id_field,
                     added_fields=score_field_names(NAMES, scores_as))
  return list(dofn.process(element))


# Field names a record might have that never clash with the added fields.
_field_names = st.text(
    alphabet=st.characters(min_codepoint=0x61, max_codepoint=0x7a),
    min_size=1, max_size=8).filter(
        lambda n: n not in ('scores', 'n_tokens', 'truncated', 'text'))
_values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=5), st.lists(st.integers(), max_size=3))
_records = st.dictionaries(_field_names, _values, max_size=6)


@settings(max_examples=50, deadline=None)
@given(extra=_records, text=st.text(max_size=20),
       scores=st.lists(st.floats(allow_nan=False, width=32), min_size=3,
                       max_size=3),
       scores_as=st.sampled_from(['list', 'columns']))
def test_a_dict_keeps_its_fields_in_order_and_gains_the_scores(
    extra, text, scores, scores_as):
  record = {**extra, 'text': text}
  before = dict(record)
  [(key, extracted_text)] = _extract(record, scores_as=scores_as)
  assert extracted_text == text and key.record is record
  out = scored_record(key, scores, 7, True, output_names=NAMES,
                      scores_as=scores_as)
  assert record == before  # the input is not changed
  added = score_field_names(NAMES, scores_as)
  assert list(out) == list(record) + added
  assert {k: out[k] for k in record} == record
  got = out['scores'] if scores_as == 'list' else [out[n] for n in NAMES]
  assert got == [float(x) for x in scores]
  assert (out['n_tokens'], out['truncated']) == (7, True)


@pytest.mark.parametrize('row', [
    beam.Row(id='a', title='見出し', text='本文'),
    Article('a', '見出し', '本文'),
], ids=['beam.Row', 'NamedTuple'])
def test_a_row_comes_back_as_a_row_with_the_same_fields(row):
  [(key, text)] = _extract(row, id_field='id')
  assert (key.id, key.form, text) == ('a', 'row', '本文')
  out = scored_record(key, [0.5, 0.25, 1.0], 2, False, output_names=NAMES,
                      scores_as='columns')
  assert isinstance(out, beam.Row)
  assert out.as_dict() == {'id': 'a', 'title': '見出し', 'text': '本文',
                           'score_0': 0.5, 'score_1': 0.25, 'score_2': 1.0,
                           'n_tokens': 2, 'truncated': False}


def test_a_dataclass_is_a_row_record():
  assert record_fields(Note('n', '本文', 3)) == (
      'row', {'id': 'n', 'text': '本文', 'stars': 3})


@pytest.mark.parametrize('pair', [('a', '本文'), ['a', '本文'],
                                  (('file.txt', 3), '本文')])
def test_pairs_pass_through_unchanged(pair):
  assert record_fields(pair) is None
  [out] = _extract(pair)
  assert out is pair
  assert scored_record('a', [1, 2, 3], 4, False, output_names=NAMES,
                       scores_as='list') == {
                           'id': 'a', 'scores': [1.0, 2.0, 3.0],
                           'n_tokens': 4, 'truncated': False}


@pytest.mark.parametrize('record,field,present', [
    ({'id': 'a', 'body': '本文'}, "'text' (text_field)", "['id', 'body']"),
    (beam.Row(id='a', body='本文'), "'text' (text_field)", "['id', 'body']"),
    ({'text': '本文'}, "'id' (id_field)", "['text']"),
])
def test_a_record_without_a_field_names_it_and_the_fields_it_has(
    record, field, present):
  with pytest.raises(RecordError) as e:
    _extract(record, id_field='id')
  assert f'no field {field}' in str(e.value)
  assert present in str(e.value)
  assert repr(e.value) == str(e.value)  # what Beam's dead letter records


@pytest.mark.parametrize('scores_as,clash', [('list', 'scores'),
                                             ('columns', 'score_1'),
                                             ('list', 'n_tokens')])
def test_a_record_that_would_lose_a_field_is_refused(scores_as, clash):
  with pytest.raises(RecordError, match=f"field\\(s\\) \\['{clash}'\\]"):
    _extract({'text': '本文', clash: 1}, scores_as=scores_as)


@pytest.mark.parametrize('element', ['a text alone', 12, None, b'bytes'])
def test_anything_else_is_refused_with_its_type(element):
  with pytest.raises(RecordError, match=type(element).__name__):
    _extract(element)


def test_error_records_carry_the_whole_record():
  record = {'id': 'd', 'text': None, 'tags': ['a', 'b'], 'n': 3}
  [(key, _)] = _extract(record, id_field='id')
  later = error_record((key, None), 'segment', 'why', raw=False,
                       batched=False, id_field='id')
  batched = error_record(((key, 4, False), None), 'inference', 'why',
                         raw=False, batched=True, id_field='id')
  raw = error_record(record, 'extract', 'why', raw=True, batched=False,
                     id_field='id')
  for err in (later, batched, raw):
    assert err['record'] == record and err['id'] == 'd'
    assert json.loads(json.dumps(err))['record'] == record
  row = error_record(beam.Row(id='r', text='x'), 'extract', 'why', raw=True,
                     batched=False, id_field=None)
  assert row == {'id': None, 'stage': 'extract', 'reason': 'why',
                 'record': {'id': 'r', 'text': 'x'}}


@pytest.mark.parametrize('doc_id', ['a', 7, ('file.txt', 3)])
def test_pair_error_records_keep_their_shape(doc_id):
  expected = {'id': doc_id, 'stage': 's', 'reason': 'r'}
  assert error_record((doc_id, 'x'), 's', 'r', raw=False, batched=False,
                      id_field=None) == expected
  assert error_record(((doc_id, 3, True), None), 's', 'r', raw=False,
                      batched=True, id_field=None) == expected


def test_carried_records_survive_pickling():
  import pickle
  key = Carried('a', 'dict', {'id': 'a', 'text': 't'})
  back = pickle.loads(pickle.dumps(key))
  assert (back.id, back.form, back.record) == ('a', 'dict', key.record)


@pytest.mark.parametrize('element_type', [
    RowTypeConstraint.from_fields([('id', str), ('text', typing.Optional[str]),
                                   ('n', int)]),
    Article,
], ids=['RowTypeConstraint', 'NamedTuple'])
@pytest.mark.parametrize('scores_as', ['list', 'columns'])
def test_scored_rows_have_the_input_schema_then_the_scores(element_type,
                                                           scores_as):
  out = scored_row_type(element_type, NAMES, scores_as, text_field='text',
                        id_field='id')
  inputs = schemas.named_fields_from_element_type(element_type)
  fields = schemas.named_fields_from_element_type(out)
  assert fields[:len(inputs)] == inputs
  assert [n for n, _ in fields[len(inputs):]] == score_field_names(
      NAMES, scores_as)
  # The schema serialises: runners and sinks can use it.
  assert schemas.schema_from_element_type(out).fields


@pytest.mark.parametrize('element_type', [
    typing.Any, typing.Tuple[str, str], typing.Dict[str, typing.Any], None
])
def test_only_schema_types_get_a_scored_row_type(element_type):
  assert scored_row_type(element_type, NAMES, 'list', text_field='text',
                         id_field=None) is None


def test_a_bad_row_schema_is_refused_before_the_pipeline_runs():
  with pytest.raises(ValueError, match=r"text_field='body'.*\['id', 'title', "
                     r"'text'\]"):
    scored_row_type(Article, NAMES, 'list', text_field='body', id_field=None)
  with pytest.raises(ValueError, match="id_field='url'"):
    scored_row_type(Article, NAMES, 'list', text_field='text', id_field='url')
  with pytest.raises(ValueError, match=r"already have the field\(s\) "
                     r"\['title'\]"):
    scored_row_type(Article, ['title'], 'columns', text_field='text',
                    id_field=None)
  with pytest.raises(ValueError, match="'not-a-name'"):
    scored_row_type(Article, ['not-a-name'], 'columns', text_field='text',
                    id_field=None)
