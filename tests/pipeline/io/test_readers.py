"""The readers: ranges cover every line once, any bytes end as a record or an
error, every codec and line convention reads the same, one id policy."""

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import zlib

import pytest
import zstandard
from apache_beam.io.filesystem import FileMetadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.io.formats import format_from_extension
from pipeline.io.ranges import (FileRange, PlanRanges, count_newlines,
                                number_ranges)
from pipeline.io.readers import read_range
from pipeline.io.record_rules import ReadError, RecordRules

CODECS = {
    '.gz': gzip.compress,
    '.bz2': bz2.compress,
    '.zst': lambda b: zstandard.ZstdCompressor().compress(b),
    '.zstd': lambda b: zstandard.ZstdCompressor().compress(b),
    '.deflate': zlib.compress,
    '.xz': lzma.compress,
    '.lzma': lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
}
DOCS = [('a1', '猫が好きです。'), ('b2', '今日は\t良い天気, "です"。'),
        ('c3', 'Wi-Fiのルーター'), ('d4', '最後の行')]


def plan(path, split_bytes=1 << 20, input_format='auto'):
  """The ranges ReadCorpus would read, planned and numbered without Beam."""
  planner = PlanRanges(input_format, split_bytes=split_bytes)
  out = list(planner.process(FileMetadata(path, os.path.getsize(path))))
  ranges = [o for o in out if isinstance(o, FileRange)]
  blocks = [o.value for o in out if not isinstance(o, FileRange)]
  if blocks:
    counted = [count_newlines(b)[1] for b in blocks]
    ranges += list(number_ranges((path, counted), blocks[0].fmt))
  return ranges


def read_all(path, split_bytes=1 << 20, rules=None, input_format='auto'):
  return [r for rng in plan(path, split_bytes, input_format)
          for r in read_range(rng, rules)]


def good(results):
  # ReadError is a named tuple too: test for it, not for tuple.
  return [r for r in results if not isinstance(r, ReadError)]


def errors(results):
  return [r for r in results if isinstance(r, ReadError)]


def encode(fmt, docs, *, newline='\n', bom=False, final_newline=True):
  """``docs`` as a file of ``fmt`` with the given line conventions."""
  if fmt == 'jsonl':
    lines = [json.dumps({'id': i, 'text': t}, ensure_ascii=False)
             for i, t in docs]
  elif fmt == 'text':
    lines = [t for _, t in docs]
  else:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(['id', 'text'])
    writer.writerows(docs)
    text = out.getvalue()
    if not final_newline:
      text = text[:-len(newline)]
    return (codecs.BOM_UTF8 if bom else b'') + text.encode('utf-8')
  text = newline.join(lines) + (newline if final_newline else '')
  return (codecs.BOM_UTF8 if bom else b'') + text.encode('utf-8')


def expected(fmt, path, docs):
  if fmt == 'text':
    return [(f'{path}:{n}', t) for n, (_, t) in enumerate(docs, 1)]
  return list(docs)


@pytest.mark.parametrize('fmt,ext', [('jsonl', '.jsonl'), ('text', '.txt'),
                                     ('csv', '.csv')])
@pytest.mark.parametrize('newline', ['\n', '\r\n'])
@pytest.mark.parametrize('bom', [False, True])
@pytest.mark.parametrize('final_newline', [True, False])
def test_line_conventions_read_the_same(tmp_path, fmt, ext, newline, bom,
                                        final_newline):
  path = str(tmp_path / f'docs{ext}')
  with open(path, 'wb') as f:
    f.write(encode(fmt, DOCS, newline=newline, bom=bom,
                   final_newline=final_newline))
  for split in (7, 1 << 20):  # cut into many ranges, and whole
    assert read_all(path, split) == expected(fmt, path, DOCS), split


def test_parquet_reads_the_same_in_row_group_ranges(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  path = str(tmp_path / 'docs.parquet')
  docs = [(f'p{i}', f'{i}番目の文書\r\nです') for i in range(50)]
  pq.write_table(pa.table({'id': [d[0] for d in docs],
                           'text': [d[1] for d in docs]}), path,
                 row_group_size=7)
  ranges = plan(path, split_bytes=1)
  assert len(ranges) == 8  # one range per row group at this size
  assert read_all(path, split_bytes=1) == docs
  assert read_all(path) == docs


@pytest.mark.parametrize('suffix', sorted(CODECS))
@pytest.mark.parametrize('fmt,ext', [('jsonl', '.jsonl'), ('text', '.txt'),
                                     ('csv', '.csv')])
def test_every_codec_is_read_whole(tmp_path, suffix, fmt, ext):
  path = str(tmp_path / f'docs{ext}{suffix}')
  with open(path, 'wb') as f:
    f.write(CODECS[suffix](encode(fmt, DOCS, bom=True, newline='\r\n')))
  ranges = plan(path, split_bytes=5)
  assert len(ranges) == 1 and ranges[0].whole  # a codec stream cannot split
  assert format_from_extension(path) == fmt
  assert read_all(path, split_bytes=5) == expected(fmt, path, DOCS)


def test_compressed_parquet(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  buf = io.BytesIO()
  pq.write_table(pa.table({'id': ['x'], 'text': ['圧縮']}), buf)
  path = str(tmp_path / 'docs.parquet.gz')
  with open(path, 'wb') as f:
    f.write(gzip.compress(buf.getvalue()))
  assert read_all(path) == [('x', '圧縮')]


def test_truncated_archive_costs_its_rest_not_the_job(tmp_path):
  path = str(tmp_path / 'docs.jsonl.gz')
  data = gzip.compress(encode('jsonl', DOCS * 500))
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  results = read_all(path)
  assert good(results) and all(isinstance(r, tuple) for r in good(results))
  last = results[-1]
  assert isinstance(last, ReadError) and last.source == path
  assert 'truncated' in last.reason


@pytest.mark.parametrize('suffix', sorted(CODECS))
@pytest.mark.parametrize('cut', [0.02, 0.5, 0.98])
def test_every_codec_cut_short_says_so_after_the_records_before_the_cut(
    tmp_path, suffix, cut):
  """Any codec, cut anywhere: the records read are the first ones, in
  order, and the file ends in an error naming it: never a silent end."""
  path = str(tmp_path / f'docs.jsonl{suffix}')
  data = CODECS[suffix](encode('jsonl', DOCS * 300))
  with open(path, 'wb') as f:
    f.write(data[:max(1, int(len(data) * cut))])
  results = read_all(path)
  docs = good(results)
  assert docs == (DOCS * 300)[:len(docs)]
  assert isinstance(results[-1], ReadError) and results[-1].source == path
  assert len(errors(results)) == 1


@pytest.mark.parametrize('suffix', ['.gz', '.bz2', '.xz', '.zst'])
def test_concatenated_streams_read_as_one_file(tmp_path, suffix):
  path = str(tmp_path / f'docs.jsonl{suffix}')
  with open(path, 'wb') as f:
    f.write(CODECS[suffix](encode('jsonl', DOCS[:2])) +
            CODECS[suffix](encode('jsonl', DOCS[2:])))
  assert read_all(path) == DOCS


@pytest.mark.parametrize('encoding', ['utf-16', 'utf-16-le', 'utf-16-be',
                                      'utf-32'])
def test_utf16_and_utf32_files_with_a_bom(tmp_path, encoding):
  bom = {'utf-16-le': codecs.BOM_UTF16_LE, 'utf-16-be': codecs.BOM_UTF16_BE
         }.get(encoding, b'')
  for fmt, ext in (('jsonl', '.jsonl'), ('text', '.txt'), ('csv', '.csv')):
    path = str(tmp_path / f'wide{ext}')
    text = encode(fmt, DOCS, newline='\r\n').decode('utf-8')
    with open(path, 'wb') as f:
      f.write(bom + text.encode(encoding))
    ranges = plan(path, split_bytes=4)
    assert len(ranges) == 1  # read whole, never cut inside a code unit
    assert read_all(path, split_bytes=4) == expected(fmt, path, DOCS), fmt


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path):
  path = str(tmp_path / 'docs.txt')
  with open(path, 'wb') as f:
    f.write('一\n\n \t\u3000\r\n二\n'.encode('utf-8'))
  assert read_all(path, split_bytes=3) == [(f'{path}:1', '一'),
                                           (f'{path}:4', '二')]


lines_strategy = st.lists(
    st.one_of(st.binary(max_size=30),
              st.text(max_size=20).map(lambda t: t.encode('utf-8',
                                                          'surrogatepass'))),
    max_size=25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines_strategy, split=st.integers(1, 64),
       crlf=st.booleans(), final=st.booleans())
def test_ranges_own_every_line_exactly_once(tmp_path, lines, split, crlf,
                                            final):
  """Any bytes, any cut points: the same (line, text) as one whole read."""
  lines = [l.replace(b'\n', b' ').replace(b'\r', b' ') for l in lines]
  sep = b'\r\n' if crlf else b'\n'
  raw = sep.join(lines) + (sep if final and lines else b'')
  path = str(tmp_path / 'any.txt')
  with open(path, 'wb') as f:
    f.write(raw)
  whole = [r for r in read_range(FileRange(path, 'text', 0, -1))]
  assert read_all(path, split) == whole
  # Each non-blank line is one document or one error, numbered from 1.
  want = [n for n, l in enumerate(lines, 1)
          if (l.decode('utf-8', 'replace').strip() if l else '')]
  got = [int((r.source if isinstance(r, ReadError) else r[0]).rsplit(':', 1)[1])
         for r in whole]
  assert got == want


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() |
    st.text(alphabet=st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(
    st.fixed_dictionaries({'id': json_values, 'text': json_values}),
    st.dictionaries(st.sampled_from(['id', 'text', 'other']), json_values),
    json_values), max_size=12))
def test_any_json_record_ends_as_a_document_or_an_error(tmp_path, records):
  path = str(tmp_path / 'any.jsonl')
  with open(path, 'wb') as f:
    for record in records:
      f.write(json.dumps(record).encode('ascii') + b'\n')
  results = read_all(path, split_bytes=40)
  assert len(results) == len(records)
  for record, result in zip(records, results):
    if not isinstance(result, ReadError):
      doc_id, text = result
      assert doc_id == record['id'] and text == record['text']
      assert type(doc_id) in (str, int) and not isinstance(doc_id, bool)
      text.encode('utf-8')
      str(doc_id).encode('utf-8')
    else:
      # Every error record can be written as strict UTF-8 JSON.
      out = result.as_record()
      json.loads(json.dumps(out, ensure_ascii=False, allow_nan=False
                            ).encode('utf-8'))
      assert out['stage'] == 'read' and out['reason']


ACCEPTED = ['abc', '猫', 0, -5, 2**63 - 1, -2**63, 'x' * 1000]
REFUSED = [(None, 'missing or null'), ('', 'is empty'), (1.5, 'float'),
           (True, 'bool'), ([1], 'list'), ({'a': 1}, 'dict'),
           (2**63, 'within 64 bits'), (float('nan'), 'float'),
           (float('inf'), 'float'), ('a\ud800b', 'unpaired surrogate')]


@pytest.mark.parametrize('doc_id', ACCEPTED)
def test_accepted_ids_come_back_unchanged(doc_id):
  rules = RecordRules()
  record = json.loads(json.dumps({'id': doc_id, 'text': '本文'}))
  assert rules.apply(record, 'f:1') == (doc_id, '本文')


@pytest.mark.parametrize('doc_id,says', REFUSED)
def test_refused_ids_name_the_type(doc_id, says):
  result = RecordRules().apply({'id': doc_id, 'text': '本文'}, 'f:3')
  assert isinstance(result, ReadError) and says in result.reason
  assert result.as_record()['id'] == 'f:3'  # the id is unusable: the source
  result.reason.encode('utf-8')


@pytest.mark.parametrize('fmt,ext', [('jsonl', '.jsonl'), ('csv', '.csv')])
def test_the_same_id_policy_in_every_format(tmp_path, fmt, ext):
  path = str(tmp_path / f'ids{ext}')
  docs = [('', '空のID'), ('ok', '良い')]
  with open(path, 'wb') as f:
    f.write(encode(fmt, docs))
  results = read_all(path)
  assert good(results) == [('ok', '良い')]
  assert [e.reason for e in errors(results)] == [
      "the id field 'id' is empty."]


def test_missing_fields_name_the_fields_and_the_option(tmp_path):
  path = str(tmp_path / 'f.jsonl')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('{"doc": 1, "body": "x"}\n{"id": 2, "body": "y"}\n')
  first, second = read_all(path)
  assert "'doc', 'body'" in first.reason and '--id_field' in first.reason
  assert "'id', 'body'" in second.reason and '--text_field' in second.reason
  assert second.as_record()['id'] == 2


def test_csv_rows_that_break_are_explained(tmp_path):
  path = str(tmp_path / 'bad.csv')
  with open(path, 'wb') as f:
    f.write(b'id,text\n1,ok\n2,"too",many\n3,caf\xe9\n4,\x00nul\n5,"open\n')
  results = read_all(path)
  assert good(results)[0] == ('1', 'ok')
  reasons = {e.source.rsplit(':', 1)[1]: e.reason for e in errors(results)}
  assert '3 fields' in reasons['3'] and 'UTF-8' in reasons['4']
  assert len(good(results)) + len(errors(results)) == 5


def test_a_huge_csv_field_is_read(tmp_path):
  from pipeline.io.readers import ReadRanges
  ReadRanges().setup()  # raises the csv module's field size limit
  path = str(tmp_path / 'big.csv')
  big = '長い' * 200_000
  with open(path, 'w', encoding='utf-8', newline='') as f:
    csv.writer(f).writerows([['id', 'text'], ['big', big]])
  assert read_all(path) == [('big', big)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1, 5000), split=st.integers(1, 6000))
def test_a_file_is_cut_into_equal_ranges_within_split_bytes(tmp_path, size,
                                                            split):
  """Ranges dealt by count (the DirectRunner) then carry equal bytes."""
  path = str(tmp_path / 'docs.jsonl')
  with open(path, 'wb') as f:
    f.write(b'x' * size)
  out = list(PlanRanges('auto', split_bytes=split).process(
      FileMetadata(path, size)))
  if size <= split:
    assert len(out) == 1 and out[0].whole
    return
  blocks = [o.value for o in out]
  lengths = [b.stop - b.start for b in blocks]
  assert blocks[0].start == 0 and blocks[-1].stop == size
  assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
  assert 0 < min(lengths) and max(lengths) <= split
  assert len(blocks) == -(-size // split)  # no more ranges than needed
  assert max(lengths[:-1]) - min(lengths) <= len(blocks)


_NON_JSON = st.sampled_from([float('nan'), float('inf'), float('-inf')])
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=5))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.function_scoped_fixture])
@given(value=st.recursive(
    st.one_of(_JSON_LEAF, _NON_JSON),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6),
       where=st.sampled_from(['id', 'text', 'extra']))
def test_nan_and_infinity_anywhere_make_the_line_invalid_json(
    tmp_path, value, where):
  """``json.loads`` reads NaN, Infinity and -Infinity; JSON has no such
  values, so a line that holds one is invalid JSON wherever it is."""
  record = {'id': 'a', 'text': '猫', where: value}
  line = json.dumps(record, ensure_ascii=False)  # allow_nan: writes NaN
  path = tmp_path / 'docs.jsonl'
  path.write_text(line + '\n', encoding='utf-8')
  [item] = list(read_range(FileRange(str(path), 'jsonl', 0, -1)))
  if _non_finite(value):
    assert isinstance(item, ReadError), item
    assert item.reason.startswith('invalid JSON (') and (
        'is not a JSON value' in item.reason)
  else:
    assert not (isinstance(item, ReadError) and
                item.reason.startswith('invalid JSON')), item


def _non_finite(value) -> bool:
  if isinstance(value, float):
    return value != value or value in (float('inf'), float('-inf'))
  if isinstance(value, dict):
    return any(_non_finite(v) for v in value.values())
  if isinstance(value, list):
    return any(_non_finite(v) for v in value)
  return False
