"""``--keep_fields``/``--keep_all_fields``: input fields carried to the output
of ``python -m pipeline.score`` in every input and output format, with their
types where the format has them."""

import base64
import csv
import datetime
import decimal
import glob
import json
import math
import os
import subprocess
import sys

import pytest
from tests.commands import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import score
from pipeline.io import kept
from pipeline.io.record_rules import ReadError, RecordRules

BASE = ['id', 'scores', 'n_tokens', 'truncated']


def _texts(corpus, n):
  return [d['text'] for d in corpus[:n]]


def _write_jsonl(path, records):
  with open(path, 'w', encoding='utf-8') as f:
    for r in records:
      # ensure_ascii keeps escapes such as \ud800 as JSON spells them.
      f.write(json.dumps(r) + '\n')
  return str(path)


def _run(bundle, path, outdir, out_fmt, *extra):
  score.run(['--input', str(path), '--model', bundle.path, '--output',
             str(outdir), '--format', out_fmt, '--num_shards', '1',
             *extra])


def _read(outdir, fmt):
  """The score records, with each format's own types, in id order."""
  [path] = glob.glob(os.path.join(str(outdir), 'scores-*'))
  if fmt == 'jsonl':
    with open(path, encoding='utf-8') as f:
      records = [json.loads(line) for line in f]
  elif fmt == 'csv':
    with open(path, encoding='utf-8', newline='') as f:
      reader = csv.reader(f)
      header = next(reader)
      records = [dict(zip(header, row)) for row in reader]
      records = [{'header': header, **r} for r in records]
  elif fmt == 'parquet':
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    records = [{'schema': table.schema, **r} for r in table.to_pylist()]
  else:
    import tensorflow as tf
    records = []
    for raw in tf.data.TFRecordDataset(path):
      features = tf.train.Example.FromString(raw.numpy()).features.feature
      record = {}
      for name, feature in features.items():
        kind = feature.WhichOneof('kind')
        record[name] = (kind, list(getattr(feature, kind).value))
      record['id'] = record['id'][1][0].decode('utf-8')
      records.append(record)
  return sorted(records, key=lambda r: str(r['id']))


def _errors(outdir):
  out = []
  for path in glob.glob(os.path.join(str(outdir), '_errors-*')):
    with open(path, encoding='utf-8') as f:
      out += [json.loads(line) for line in f]
  return out


# --- the option checks -------------------------------------------------------

@pytest.mark.parametrize('args,named', [
    (['--keep_fields', 'title,scores'], "'scores'"),
    (['--keep_fields', 'n_tokens'], "'n_tokens'"),
    (['--keep_fields', 'truncated'], "'truncated'"),
    (['--keep_fields', 'id', '--id_field', 'url'], "'id'"),
    (['--keep_fields', 'a,,b'], 'empty field name'),
    (['--keep_fields', 'a', '--keep_all_fields'], '--keep_all_fields'),
])
def test_colliding_or_bad_names_are_refused_up_front(tmp_path, capsys, args,
                                                      named):
  # The bundle does not exist: the options are refused before it is read.
  assert score.main(['--input', str(tmp_path / 'x.jsonl'), '--model',
                     str(tmp_path / 'none'), '--output', str(tmp_path / 'o'),
                     *args]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and '--keep_fields' in err[0] and named in err[0]
  assert not os.path.exists(tmp_path / 'o')


def test_keeping_the_id_named_id_is_allowed():
  kept.check_keep_options(['id', 'title'], False, 'id')
  assert kept.parse_keep_fields(' a, b ,a') == ['a', 'b']


# --- the readers -------------------------------------------------------------

def test_records_are_pairs_unless_a_field_is_kept():
  record = {'id': 'a', 'text': '本文', 'title': 'T', 'n': 1}
  assert RecordRules().apply(record, 'f:1') == ('a', '本文')
  assert RecordRules(keep_fields=['n', 'gone']).apply(record, 'f:1') == {
      'id': 'a', 'text': '本文', 'n': 1}
  assert RecordRules(keep_all_fields=True).apply(record, 'f:1') == record
  assert RecordRules(keep_fields=['n']).text_record('f:2', 'x') == {
      'id': 'f:2', 'text': 'x'}
  assert RecordRules().text_record('f:2', 'x') == ('f:2', 'x')


@pytest.mark.parametrize('value', [
    '\ud800', 'ok\udfffok', ['a', '\udc80'], {'k': ['\ud801']},
    {'\ud802': 1}])
def test_a_kept_value_with_a_lone_surrogate_is_a_read_error(value):
  record = {'id': 'a', 'text': '本文', 'bad': value}
  for rules in (RecordRules(keep_fields=['bad']),
                RecordRules(keep_all_fields=True)):
    result = rules.apply(record, 'f:7')
    assert isinstance(result, ReadError)
    assert "'bad'" in result.reason and 'surrogate' in result.reason
    assert result.doc_id == 'a' and result.source == 'f:7'
  # A field not kept is never looked at.
  assert RecordRules(keep_fields=['other']).apply(record, 'f:7') == {
      'id': 'a', 'text': '本文'}


def test_a_kept_value_nested_too_deeply_is_a_read_error():
  from pipeline.io.record_rules import MAX_KEPT_DEPTH

  def nest(depth, leaf):
    for i in range(depth):
      leaf = [leaf] if i % 2 else {'k': leaf}
    return leaf

  rules = RecordRules(keep_fields=['deep'])
  ok = rules.apply({'id': 'a', 'text': 't', 'deep': nest(MAX_KEPT_DEPTH, 1)},
                   'f:1')
  assert ok['deep'] == nest(MAX_KEPT_DEPTH, 1)
  for depth in (MAX_KEPT_DEPTH + 1, 5000):  # beyond Python's recursion
    bad = rules.apply({'id': 'a', 'text': 't', 'deep': nest(depth, 1)}, 'f:1')
    assert isinstance(bad, ReadError) and 'nested' in bad.reason
  name = RecordRules(keep_all_fields=True).apply(
      {'id': 'a', 'text': 't', 'x\udc80': 1}, 'f:1')
  assert isinstance(name, ReadError) and 'name of the field' in name.reason


@pytest.mark.parametrize('field,id_field', [
    ('scores', 'id'), ('n_tokens', 'id'), ('truncated', 'url'),
    ('id', 'url')])
def test_keep_all_refuses_a_record_whose_field_the_output_overwrites(
    field, id_field):
  record = {id_field: 'a', 'text': '本文', field: 1}
  result = RecordRules(id_field, keep_all_fields=True).apply(record, 'f:1')
  assert isinstance(result, ReadError)
  assert repr(field) in result.reason and '--keep_fields' in result.reason


# --- values per format -------------------------------------------------------

def test_json_and_text_renderings_of_values_json_lacks():
  when = datetime.datetime(2024, 3, 8, 9, 30, tzinfo=datetime.timezone.utc)
  assert kept.jsonable(when) == '2024-03-08T09:30:00+00:00'
  assert kept.jsonable(datetime.date(2024, 3, 8)) == '2024-03-08'
  assert kept.jsonable(decimal.Decimal('1.10')) == '1.10'
  assert kept.jsonable(b'\x00\xff') == base64.b64encode(b'\x00\xff').decode()
  assert kept.jsonable([math.nan, math.inf, 1.5]) == [None, None, 1.5]
  assert kept.jsonable([('k', 1)]) == [['k', 1]]  # a Parquet map
  assert kept.text_value(None) is None
  assert kept.text_value(True) == 'true'
  assert kept.text_value({'a': [1, '猫']}) == '{"a": [1, "猫"]}'
  assert kept.text_value(when) == '2024-03-08T09:30:00+00:00'


def test_parquet_fit_never_truncates():
  import pyarrow as pa
  fit = kept._fit  # pylint: disable=protected-access
  assert fit(2.0, pa.int64()) == 2 and isinstance(fit(2.0, pa.int64()), int)
  assert fit(3, pa.float64()) == 3.0
  assert fit(7, pa.string()) == '7' and fit(None, pa.int64()) is None
  for value, arrow_type in [(2.5, pa.int64()), ('3', pa.int64()),
                            (True, pa.int64()), (1, pa.bool_()),
                            (300, pa.int8()), (-1, pa.uint32()),
                            (1 << 64, pa.int64()), ('x', pa.float64()),
                            ('x', pa.date32())]:
    with pytest.raises(kept._Misfit):  # pylint: disable=protected-access
      fit(value, arrow_type)


# --- through the command -----------------------------------------------------

def _jsonl_records(corpus):
  texts = _texts(corpus, 4)
  return [
      {'id': 'a', 'text': texts[0], 'n': 3, 'x': 1.5, 'flag': True,
       'tags': ['x', '猫'], 'meta': {'k': [1, None]}, 'title': '天気',
       'big': 1 << 70},
      {'id': 7, 'text': texts[1], 'n': -4, 'x': 2, 'flag': False,
       'tags': [], 'meta': None, 'title': 'a,"b"\nc', 'big': 5},
      {'id': 'c', 'text': texts[2]},  # every kept field missing
      {'id': 'bad', 'text': texts[3], 'title': '\udc80'},
  ]


def test_jsonl_in_jsonl_out_keeps_json_types(tmp_path, corpus,
                                            trained_bundle):
  records = _jsonl_records(corpus)
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  _run(trained_bundle, path, tmp_path / 'out', 'jsonl', '--keep_all_fields')
  out = _read(tmp_path / 'out', 'jsonl')
  assert [r['id'] for r in out] == [7, 'a', 'c']
  by_id = {r['id']: r for r in out}
  for source in records[:3]:
    got = by_id[source['id']]
    assert list(got)[:4] == BASE  # Today's fields first, the id as `id`.
    assert {k: v for k, v in got.items() if k not in BASE} == {
        k: v for k, v in source.items() if k != 'id'}
    for name, value in source.items():  # bool stays bool, 2 stays int...
      assert type(got[name]) is type(value)
  [error] = _errors(tmp_path / 'out')
  assert error['id'] == 'bad' and error['stage'] == 'read'
  assert "'title'" in error['reason'] and 'surrogate' in error['reason']


@pytest.mark.slow
def test_scores_are_the_same_with_and_without_kept_fields(tmp_path, corpus,
                                                          trained_bundle):
  records = [{'id': f'd{i}', 'text': t, 'title': f't{i}', 'n': i}
             for i, t in enumerate(_texts(corpus, 12))]
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  _run(trained_bundle, path, tmp_path / 'plain', 'jsonl')
  _run(trained_bundle, path, tmp_path / 'kept', 'jsonl', '--keep_fields',
       'title,n')
  plain = _read(tmp_path / 'plain', 'jsonl')
  with_fields = _read(tmp_path / 'kept', 'jsonl')
  assert len(plain) == len(records)
  assert all(list(r) == BASE for r in plain)  # No field kept: as before.
  assert [{k: r[k] for k in BASE} for r in with_fields] == plain
  assert [(r['title'], r['n']) for r in with_fields] == [
      (d['title'], d['n']) for d in sorted(records, key=lambda d: d['id'])]


def test_jsonl_in_parquet_out_infers_column_types(tmp_path, corpus,
                                                  trained_bundle):
  import pyarrow as pa
  records = _jsonl_records(corpus)[:3]
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  _run(trained_bundle, path, tmp_path / 'out', 'parquet', '--keep_fields',
       'n,x,flag,tags,meta,title,big,text,nowhere')
  out = _read(tmp_path / 'out', 'parquet')
  schema = out[0]['schema']
  assert schema.names == BASE + ['n', 'x', 'flag', 'tags', 'meta', 'title',
                                 'big', 'text', 'nowhere']
  assert [str(schema.field(n).type) for n in schema.names[4:]] == [
      'int64', 'double', 'bool', 'string', 'string', 'string', 'string',
      'string', 'string']
  by_id = {r['id']: r for r in out}
  assert by_id['a']['n'] == 3 and by_id['7']['x'] == 2.0
  assert by_id['a']['flag'] is True and by_id['7']['flag'] is False
  assert json.loads(by_id['a']['tags']) == ['x', '猫']
  assert json.loads(by_id['a']['meta']) == {'k': [1, None]}
  assert by_id['a']['big'] == str(1 << 70)  # beyond int64: exact as text
  assert by_id['7']['title'] == 'a,"b"\nc'
  assert by_id['a']['text'] == records[0]['text']
  assert by_id['7']['meta'] is None  # JSON null
  assert all(by_id['c'][n] is None for n in schema.names[4:11])  # missing
  assert all(r['nowhere'] is None for r in out)
  assert isinstance(schema.field('scores').type, pa.ListType)


def test_values_that_do_not_fit_the_sampled_column_are_write_errors(
    tmp_path, corpus, trained_bundle, monkeypatch):
  texts = _texts(corpus, 5)
  records = [{'id': 'i1', 'text': texts[0], 'n': 1, 'title': 'a'},
             {'id': 'i2', 'text': texts[1], 'n': 2, 'title': 'b'},
             {'id': 'i3', 'text': texts[2], 'n': 2.5, 'title': 3},
             {'id': 'i4', 'text': texts[3], 'n': 4.0, 'title': None,
              'later': 'x'},
             {'id': 'i5', 'text': texts[4], 'n': 'five'}]
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  monkeypatch.setattr(kept, 'SAMPLE_RECORDS', 2)  # types from i1, i2 only
  _run(trained_bundle, path, tmp_path / 'pq', 'parquet', '--keep_fields',
       'n,title')
  out = _read(tmp_path / 'pq', 'parquet')
  assert [(r['id'], r['n'], r['title']) for r in out] == [
      ('i1', 1, 'a'), ('i2', 2, 'b'), ('i4', 4, None)]
  errors = {e['id']: e for e in _errors(tmp_path / 'pq')}
  assert sorted(errors) == ['i3', 'i5']
  for e in errors.values():
    assert e['stage'] == 'write' and "'n'" in e['reason']
    assert 'int64' in e['reason']
  # With every field kept, CSV columns come from the sample too: a field
  # first seen later is a write error, never a silently dropped value.
  _run(trained_bundle, path, tmp_path / 'csv', 'csv', '--keep_all_fields')
  out = _read(tmp_path / 'csv', 'csv')
  assert out[0]['header'] == BASE + ['text', 'n', 'title']
  assert [(r['id'], r['n'], r['title']) for r in out] == [
      ('i1', '1', 'a'), ('i2', '2', 'b'), ('i3', '2.5', '3'),
      ('i5', 'five', '')]
  [error] = _errors(tmp_path / 'csv')
  assert error['id'] == 'i4' and error['stage'] == 'write'
  assert "'later'" in error['reason']


def _parquet_input(path, corpus):
  import pyarrow as pa
  import pyarrow.parquet as pq
  texts = _texts(corpus, 3)
  when = datetime.datetime(2024, 3, 8, 9, 30, tzinfo=datetime.timezone.utc)
  table = pa.table({
      'doc': pa.array([11, 12, 13], pa.int32()),
      'text': texts,
      'small': pa.array([1, None, -3], pa.int8()),
      'ratio': pa.array([0.5, 1.25, None], pa.float32()),
      'ok': [True, False, None],
      'when': pa.array([when, None, when], pa.timestamp('ms', tz='UTC')),
      'day': pa.array([datetime.date(2024, 1, 2)] * 3, pa.date32()),
      'price': pa.array([decimal.Decimal('1.10'), None,
                         decimal.Decimal('-2.50')], pa.decimal128(5, 2)),
      'blob': [b'\x00\xff', b'', None],
      'nums': pa.array([[1, 2], [], None], pa.list_(pa.int64())),
      'pair': [{'a': 1, 'b': 'x'}, None, {'a': 3, 'b': None}],
      'title': ['天気', None, 'x,y'],
  })
  pq.write_table(table, path)
  return table


def test_parquet_in_parquet_out_keeps_the_column_types(tmp_path, corpus,
                                                       trained_bundle):
  table = _parquet_input(tmp_path / 'in.parquet', corpus)
  _run(trained_bundle, tmp_path / 'in.parquet', tmp_path / 'out', 'parquet',
       '--id_field', 'doc', '--keep_all_fields')
  out = _read(tmp_path / 'out', 'parquet')
  schema = out[0]['schema']
  assert schema.names == BASE + table.schema.names
  for field in table.schema:
    assert schema.field(field.name).type == field.type, field.name
  expected = table.to_pylist()
  for got, want in zip(out, expected):
    assert got['id'] == str(want['doc'])
    assert {k: got[k] for k in want} == want
  assert _errors(tmp_path / 'out') == []


@pytest.mark.slow
def test_parquet_in_jsonl_and_tfrecord_out(tmp_path, corpus, trained_bundle):
  table = _parquet_input(tmp_path / 'in.parquet', corpus)
  want = {r['doc']: r for r in table.to_pylist()}
  fields = 'doc,small,ratio,ok,when,day,price,blob,nums,pair'
  _run(trained_bundle, tmp_path / 'in.parquet', tmp_path / 'json', 'jsonl',
       '--id_field', 'doc', '--keep_fields', fields)
  out = _read(tmp_path / 'json', 'jsonl')
  assert [r['id'] for r in out] == [11, 12, 13]  # JSON keeps the int id
  assert [r['doc'] for r in out] == list(want)
  first = out[0]
  assert list(first) == BASE + fields.split(',')
  assert first['doc'] == 11 and first['small'] == 1 and first['ok'] is True
  assert first['ratio'] == 0.5 and first['when'] == '2024-03-08T09:30:00+00:00'
  assert first['day'] == '2024-01-02' and first['price'] == '1.10'
  assert base64.b64decode(first['blob']) == b'\x00\xff'
  assert first['nums'] == [1, 2] and first['pair'] == {'a': 1, 'b': 'x'}
  assert out[1]['small'] is None and out[1]['pair'] is None
  _run(trained_bundle, tmp_path / 'in.parquet', tmp_path / 'tf', 'tfrecord',
       '--id_field', 'doc', '--keep_fields', fields + ',title')
  out = {r['id']: r for r in _read(tmp_path / 'tf', 'tfrecord')}
  assert out['11']['doc'] == ('int64_list', [11])
  assert out['11']['small'] == ('int64_list', [1])
  assert out['11']['ratio'] == ('float_list', [0.5])
  assert out['11']['ok'] == ('int64_list', [1])
  assert out['11']['blob'] == ('bytes_list', [b'\x00\xff'])
  assert out['11']['when'] == ('bytes_list', [b'2024-03-08T09:30:00+00:00'])
  assert out['11']['price'] == ('bytes_list', [b'1.10'])
  assert out['11']['nums'] == ('bytes_list', [b'[1, 2]'])
  assert out['11']['title'] == ('bytes_list', ['天気'.encode()])
  assert json.loads(out['13']['pair'][1][0]) == {'a': 3, 'b': None}
  assert 'small' not in out['12'] and 'title' not in out['12']  # null
  assert 'text' not in out['11']  # not kept: the text is not written
  assert out['12']['scores'][0] == 'float_list'


@pytest.mark.slow
def test_csv_in_csv_and_parquet_out_writes_text(tmp_path, corpus,
                                                trained_bundle):
  texts = _texts(corpus, 3)
  path = tmp_path / 'in.csv'
  with open(path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['url', 'text', 'title', 'n'])
    writer.writerow(['u1', texts[0], 'a,"b"\n2行', '007'])
    writer.writerow(['u2', texts[1], '', '2'])
  _run(trained_bundle, path, tmp_path / 'csv', 'csv', '--id_field', 'url',
       '--keep_fields', 'url,title,n,missing')
  out = _read(tmp_path / 'csv', 'csv')
  assert out[0]['header'] == BASE + ['url', 'title', 'n', 'missing']
  assert [(r['id'], r['url'], r['title'], r['n'], r['missing'])
          for r in out] == [('u1', 'u1', 'a,"b"\n2行', '007', ''),
                            ('u2', 'u2', '', '2', '')]
  assert len(json.loads(out[0]['scores'])) == 8
  _run(trained_bundle, path, tmp_path / 'pq', 'parquet', '--id_field', 'url',
       '--keep_all_fields')
  out = _read(tmp_path / 'pq', 'parquet')
  schema = out[0]['schema']
  assert schema.names == BASE + ['url', 'text', 'title', 'n']
  assert {str(schema.field(n).type) for n in schema.names[4:]} == {'string'}
  assert [(r['url'], r['text'], r['n']) for r in out] == [
      ('u1', texts[0], '007'), ('u2', texts[1], '2')]


@pytest.mark.slow
def test_text_in_keeps_only_the_id_and_the_text(tmp_path, corpus,
                                                trained_bundle):
  texts = _texts(corpus, 3)
  path = tmp_path / 'in.txt'
  path.write_text('\n'.join(texts) + '\n', encoding='utf-8')
  _run(trained_bundle, path, tmp_path / 'tf', 'tfrecord', '--keep_fields',
       'text,title')
  out = _read(tmp_path / 'tf', 'tfrecord')
  assert [r['id'] for r in out] == [f'{path}:{i}' for i in (1, 2, 3)]
  assert [r['text'] for r in out] == [('bytes_list', [t.encode()])
                                      for t in texts]
  assert all('title' not in r for r in out)  # missing: no feature
  _run(trained_bundle, path, tmp_path / 'json', 'jsonl', '--keep_all_fields')
  out = _read(tmp_path / 'json', 'jsonl')
  assert [list(r) for r in out] == [BASE + ['text']] * 3
  assert [r['text'] for r in out] == texts


def test_jsonl_in_tfrecord_out_gives_a_feature_one_type(tmp_path, corpus,
                                                        trained_bundle):
  records = _jsonl_records(corpus)[:3]
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  _run(trained_bundle, path, tmp_path / 'out', 'tfrecord',
       '--keep_all_fields')
  out = {r['id']: r for r in _read(tmp_path / 'out', 'tfrecord')}
  # x is 1.5 in one record and 2 in another: a float feature in both.
  assert out['a']['x'] == ('float_list', [1.5])
  assert out['7']['x'] == ('float_list', [2.0])
  assert out['a']['n'] == ('int64_list', [3])
  assert out['a']['flag'] == ('int64_list', [1])
  assert out['a']['tags'] == ('bytes_list', [json.dumps(
      ['x', '猫'], ensure_ascii=False).encode()])
  assert out['a']['big'] == ('bytes_list', [str(1 << 70).encode()])
  assert 'meta' not in out['7'] and 'n' not in out['c']
  assert out['c']['text'] == ('bytes_list', [records[2]['text'].encode()])


@pytest.mark.slow
def test_the_command_in_a_subprocess(tmp_path, corpus, trained_bundle):
  records = _jsonl_records(corpus)[:2]
  path = _write_jsonl(tmp_path / 'in.jsonl', records)
  env = {**os.environ, 'PYTHONPATH': ROOT}
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', '--input', path, '--model',
       trained_bundle.path, '--output', str(tmp_path / 'out'), '--format',
       'csv', '--keep_fields', 'title,flag,meta'],
      capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-2000:]
  out = _read(tmp_path / 'out', 'csv')
  assert out[0]['header'] == BASE + ['title', 'flag', 'meta']
  assert [(r['id'], r['title'], r['flag'], r['meta']) for r in out] == [
      ('7', 'a,"b"\nc', 'false', ''),
      ('a', '天気', 'true', '{"k": [1, null]}')]
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', '--input', path, '--model',
       trained_bundle.path, '--output', str(tmp_path / 'o2'),
       '--keep_fields', 'scores'],
      capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: --keep_fields names 'scores'")


# --- any JSON record ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() |
    st.text(alphabet=st.characters(codec=None), max_size=8),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(alphabet=st.characters(codec=None), max_size=4),
                    inner, max_size=3),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(extra=st.dictionaries(st.text(alphabet=st.characters(codec=None),
                                     max_size=6), json_values, max_size=4),
       keep_all=st.booleans())
def test_any_kept_json_value_is_encodable_and_writable(extra, keep_all):
  """Whatever a JSON record holds, kept fields either reach every writer in
  a form Beam can encode and the format can write, or the record is a read
  error that can itself be written."""
  import pyarrow as pa
  from apache_beam.coders import coders
  record = {**extra, 'id': 'd1', 'text': '本文'}
  rules = RecordRules(keep_fields=None if keep_all else list(extra),
                      keep_all_fields=keep_all)
  try:
    kept.check_keep_options([] if keep_all else list(extra), keep_all, 'id')
  except ValueError:
    return  # Refused up front, before anything runs.
  result = rules.apply(json.loads(json.dumps(record)), 'f:1')
  if not rules.keeps:  # Nothing kept: the pair, as before.
    assert result == ('d1', '本文')
    return
  if isinstance(result, ReadError):
    json.dumps(result.as_record(), ensure_ascii=False).encode('utf-8')
    return
  coder = coders.FastPrimitivesCoder()
  assert coder.decode(coder.encode(result)) == result or any(
      isinstance(v, float) and v != v for v in _leaves(result))  # NaN
  scored = {**result, 'scores': [0.5], 'n_tokens': 1, 'truncated': False}
  out = kept.output_record(scored, id_field='id', keep_fields=list(extra),
                           keep_all_fields=keep_all)
  assert list(out)[:4] == BASE
  assert set(out) - set(BASE) == (
      set(extra) | ({'text'} if keep_all else set())) - set(BASE)
  line = json.dumps(kept.json_record(out), ensure_ascii=False,
                    allow_nan=False)
  line.encode('utf-8')
  names = [n for n in out if n not in BASE]
  kept.csv_suffix(kept.csv_cells(out, names)).encode('utf-8')
  kept.tf_features(out)
  for name in names:
    kept._fit(out[name], pa.string())  # pylint: disable=protected-access


def _leaves(value):
  if isinstance(value, dict):
    for v in value.values():
      yield from _leaves(v)
  elif isinstance(value, list):
    for v in value:
      yield from _leaves(v)
  else:
    yield value


def test_columns_of_several_files_merge_their_types(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  _write_jsonl(tmp_path / 'a.jsonl', [
      {'id': 1, 'text': 't', 'n': 1, 'm': 1, 's': 'x', 'b': True}])
  _write_jsonl(tmp_path / 'b.jsonl', [
      {'id': 2, 'text': 't', 'n': 2.5, 'm': 'one', 'b': False, 'z': None}])
  pq.write_table(pa.table({'id': ['p'], 'text': ['t'],
                           'n': pa.array([1], pa.int64()),
                           'q': pa.array([1], pa.int16())}),
                 tmp_path / 'c.parquet')
  columns = kept.infer_columns(str(tmp_path / '*'), 'auto', id_field='id',
                               text_field='text', keep_fields=[],
                               keep_all_fields=True)
  assert [(c.name, str(c.type)) for c in columns] == [
      ('text', 'string'), ('n', 'double'), ('m', 'string'), ('s', 'string'),
      ('b', 'bool'), ('z', 'string'), ('q', 'int16')]
  columns = kept.infer_columns(str(tmp_path / '*.jsonl'), 'auto',
                               id_field='id', text_field='text',
                               keep_fields=['b', 'id', 'gone'],
                               keep_all_fields=False, sample_records=1)
  assert [(c.name, str(c.type)) for c in columns] == [
      ('b', 'bool'), ('gone', 'string')]
