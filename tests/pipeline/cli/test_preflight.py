"""Checks before any work (`pipeline.cli.preflight`): a wrong field of a CSV
or Parquet input is one line, not an error record per row."""

import codecs
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import score

ROWS = [{'doc': 'a', 'body': '今日は晴れです。', 'title': 't1'},
        {'doc': 'b', 'body': '明日は雨です。', 'title': 't2'}]


def _csv_text(sep=','):
  lines = [sep.join(ROWS[0])] + [sep.join(r.values()) for r in ROWS]
  return '\n'.join(lines) + '\n'


def _write(folder, name):
  """One file of ``name``'s kind holding ROWS (columns doc, body, title)."""
  path = os.path.join(folder, name)
  if name.endswith('.csv'):
    with open(path, 'w', encoding='utf-8') as f:
      f.write(_csv_text())
  elif name.endswith('.tsv'):
    with open(path, 'w', encoding='utf-8') as f:
      f.write(_csv_text('\t'))
  elif name.endswith('.csv.gz'):
    with gzip.open(path, 'wt', encoding='utf-8') as f:
      f.write(_csv_text())
  elif name.endswith('.utf16.csv'):
    with open(path, 'wb') as f:
      f.write(codecs.BOM_UTF16_LE + _csv_text().encode('utf-16-le'))
  elif name.endswith('.parquet'):
    pq.write_table(pa.Table.from_pylist(ROWS), path)
  elif name.endswith('.parquet.gz'):
    raw = os.path.join(folder, 'raw.parquet.tmp')
    pq.write_table(pa.Table.from_pylist(ROWS), raw)
    with open(raw, 'rb') as f, gzip.open(path, 'wb') as g:
      g.write(f.read())
    os.remove(raw)
  return path


FILES = ['docs.csv', 'docs.tsv', 'docs.csv.gz', 'docs.utf16.csv',
         'docs.parquet', 'docs.parquet.gz']


@pytest.mark.parametrize('name', FILES)
@pytest.mark.parametrize('fields,option', [
    (['--id_field', 'doc'], '--text_field'),  # the default text: absent
    (['--text_field', 'body'], '--id_field'),  # the default id: absent
    (['--id_field', 'doc', '--text_field', 'Body'], '--text_field'),
])
def test_a_field_the_columns_lack_is_one_line_before_any_work(
    tmp_path, trained_bundle, capsys, name, fields, option):
  path = _write(str(tmp_path), name)
  out = tmp_path / 'out'
  code = score.main(['--input', path, '--model', trained_bundle.path,
                     '--output', str(out), *fields])
  assert code == 2
  [line] = capsys.readouterr().err.strip().splitlines()
  assert line.startswith(f'error: {option} ')
  assert path in line and "'doc', 'body', 'title'" in line
  assert not out.exists()  # no work: not even the output folder


@pytest.mark.slow
@pytest.mark.parametrize('name', FILES)
def test_the_right_fields_score_every_row(tmp_path, trained_bundle, name):
  path = _write(str(tmp_path), name)
  out = tmp_path / 'out'
  assert score.main(['--input', path, '--model', trained_bundle.path,
                     '--output', str(out), '--id_field', 'doc',
                     '--text_field', 'body', '--progress_secs', '0']) == 0
  with open(out / '_SUMMARY.json', encoding='utf-8') as f:
    counts = json.load(f)['counts']
  assert counts['scored'] == 2 and counts['errors'] == 0


def test_jsonl_records_without_the_field_stay_error_records(
    tmp_path, trained_bundle):
  path = tmp_path / 'docs.jsonl'
  path.write_text('{"id": "a", "text": "猫"}\n{"id": "b", "body": "犬"}\n',
                  encoding='utf-8')
  out = tmp_path / 'out'
  assert score.main(['--input', str(path), '--model', trained_bundle.path,
                     '--output', str(out), '--progress_secs', '0']) == 0
  [errors] = list(out.glob('_errors-*.jsonl'))
  [error] = [json.loads(l) for l in errors.read_text('utf-8').splitlines()]
  assert error['id'] == 'b' and "'text' is missing" in error['reason']
