"""End-to-end runs of ``python -m pipeline.score`` on real files."""

import csv
import glob
import json
import os

import numpy as np
import pytest

from pipeline import score

DOCS = 12


def _write_inputs(directory, corpus, fmt):
  docs = [{'id': d['id'], 'text': d['text']} for d in corpus[:DOCS]]
  os.makedirs(directory, exist_ok=True)
  if fmt == 'jsonl':
    path = os.path.join(directory, 'docs.jsonl')
    with open(path, 'w', encoding='utf-8') as f:
      for d in docs:
        f.write(json.dumps(d, ensure_ascii=False) + '\n')
      f.write('{"id": "broken", "text": \n')
    return path, {d['id'] for d in docs}, {f'{path}:{DOCS + 1}'}
  if fmt == 'text':
    path = os.path.join(directory, 'docs.txt')
    with open(path, 'wb') as f:
      for d in docs:
        f.write(d['text'].encode('utf-8') + b'\n')
      f.write(b'\xff\xfe\n')
    return (path, {f'{path}:{i}' for i in range(1, DOCS + 1)},
            {f'{path}:{DOCS + 1}'})
  if fmt == 'csv':
    path = os.path.join(directory, 'docs.csv')
    with open(path, 'w', encoding='utf-8', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['id', 'text'])
      for d in docs:
        writer.writerow([d['id'], d['text'] + '\n二行目'])
      writer.writerow(['', 'no id'])
    # An empty id is refused, as in every format; each record spans 2 lines.
    return path, {d['id'] for d in docs}, {f'{path}:{2 + 2 * DOCS}'}
  import pyarrow as pa
  import pyarrow.parquet as pq
  path = os.path.join(directory, 'docs.parquet')
  table = pa.table({'id': [d['id'] for d in docs] + ['nulltext'],
                    'text': [d['text'] for d in docs] + [None]})
  pq.write_table(table, path)
  return path, {d['id'] for d in docs}, {'nulltext'}


def _read_scores(outdir, fmt):
  paths = sorted(glob.glob(os.path.join(outdir, 'scores-*-of-*')))
  assert paths and all(p.endswith('.' + fmt) for p in paths)
  records = []
  for path in paths:
    if fmt == 'jsonl':
      with open(path, encoding='utf-8') as f:
        records += [json.loads(line) for line in f]
    elif fmt == 'csv':
      with open(path, encoding='utf-8', newline='') as f:
        for row in csv.DictReader(f):
          records.append({'id': row['id'], 'scores': json.loads(row['scores']),
                          'n_tokens': int(row['n_tokens']),
                          'truncated': row['truncated'] == 'true'})
    elif fmt == 'parquet':
      import pyarrow.parquet as pq
      records += pq.read_table(path).to_pylist()
    else:
      import tensorflow as tf
      for raw in tf.data.TFRecordDataset(path):
        ex = tf.train.Example.FromString(raw.numpy())
        f = ex.features.feature
        records.append({
            'id': f['id'].bytes_list.value[0].decode('utf-8'),
            'scores': list(f['scores'].float_list.value),
            'n_tokens': f['n_tokens'].int64_list.value[0],
            'truncated': bool(f['truncated'].int64_list.value[0]),
        })
  return records


def _read_errors(outdir):
  records = []
  for path in glob.glob(os.path.join(outdir, 'errors-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      records += [json.loads(line) for line in f]
  return records


@pytest.mark.parametrize('in_fmt,out_fmt', [
    ('jsonl', 'jsonl'), ('text', 'csv'), ('csv', 'parquet'),
    ('parquet', 'tfrecord'), ('jsonl', 'parquet'), ('text', 'tfrecord')
])
def test_every_record_lands_in_scores_or_errors(tmp_path, corpus,
                                                 trained_bundle, in_fmt,
                                                 out_fmt, capsys):
  path, good_ids, bad_ids = _write_inputs(str(tmp_path / 'in'), corpus, in_fmt)
  outdir = str(tmp_path / 'out')
  assert score.main(['--input', path, '--model', trained_bundle.path,
                     '--output', outdir, '--format', out_fmt,
                     '--num_shards', '2']) == 0
  records = _read_scores(outdir, out_fmt)
  errors = _read_errors(outdir)
  assert sorted(str(r['id']) for r in records) == sorted(good_ids)
  assert {str(e['id']) for e in errors} == bad_ids
  assert all(e['stage'] == 'read' and e['reason'] for e in errors)
  for r in records:
    assert len(r['scores']) == 8 and r['n_tokens'] >= 0
  printed = capsys.readouterr().out
  assert f'Scored {len(good_ids)} documents' in printed
  assert f'{len(bad_ids)} errors' in printed


def test_scores_match_the_transform(tmp_path, corpus, trained_bundle):
  path, _, _ = _write_inputs(str(tmp_path / 'in'), corpus, 'jsonl')
  outdir = str(tmp_path / 'out')
  score.run(['--input', path, '--model', trained_bundle.path,
             '--output', outdir])
  from model.text import Segmenter
  segmenter, rules = Segmenter(), trained_bundle.tokenizer
  predict = trained_bundle.load_signature()
  texts = {d['id']: d['text'] for d in corpus[:DOCS]}
  for r in _read_scores(outdir, 'jsonl'):
    ids, _ = trained_bundle.vocabulary.lookup(
        rules.words(segmenter.segment(texts[r['id']])))
    np.testing.assert_allclose(r['scores'], predict(ids[None, :])[0],
                               atol=1e-5)


def test_rerun_replaces_earlier_output(tmp_path, corpus, trained_bundle):
  path, good_ids, _ = _write_inputs(str(tmp_path / 'in'), corpus, 'jsonl')
  outdir = str(tmp_path / 'out')
  base = ['--input', path, '--model', trained_bundle.path, '--output', outdir]
  score.run(base + ['--num_shards', '3'])
  first = sorted(json.dumps(r, sort_keys=True)
                 for r in _read_scores(outdir, 'jsonl'))
  score.run(base + ['--num_shards', '2'])
  names = sorted(os.listdir(outdir))
  assert names == ['errors-00000-of-00002.jsonl', 'errors-00001-of-00002.jsonl',
                   'scores-00000-of-00002.jsonl', 'scores-00001-of-00002.jsonl']
  second = sorted(json.dumps(r, sort_keys=True)
                  for r in _read_scores(outdir, 'jsonl'))
  assert len(second) == len(good_ids)
  # Deterministic: the same records, bit for bit (a row's scores do not
  # depend on the batch it lands in).
  assert first == second


def test_bad_bundle_is_refused_before_running(tmp_path, capsys):
  assert score.main(['--input', str(tmp_path / '*.jsonl'), '--model',
                     str(tmp_path / 'nowhere'), '--output',
                     str(tmp_path / 'out')]) == 2
  assert 'manifest.json' in capsys.readouterr().err


def test_missing_arguments_are_named(capsys):
  assert score.main(['--input', 'x.jsonl']) == 2
  assert '--model, --output are required' in capsys.readouterr().err


def test_a_failed_write_leaves_no_final_shard(tmp_path):
  """Beam's sinks write to a temporary directory and rename only on success."""
  import apache_beam as beam
  from pipeline.writers import WriteScores
  records = [{'id': i, 'scores': [0.5] * 8, 'n_tokens': 3, 'truncated': False}
             for i in range(50)]
  records.append({'id': 'boom', 'scores': {0.5}, 'n_tokens': 1,
                  'truncated': False})  # a set: not JSON serializable
  outdir = str(tmp_path / 'out')
  with pytest.raises(Exception, match='not JSON serializable'):
    with beam.Pipeline() as p:
      _ = p | beam.Create(records) | WriteScores(outdir, 'jsonl', num_shards=1)
  assert glob.glob(os.path.join(outdir, 'scores-*')) == []


def test_a_successful_run_leaves_only_final_shards(tmp_path, corpus,
                                                   trained_bundle):
  path, good_ids, _ = _write_inputs(str(tmp_path / 'in'), corpus, 'jsonl')
  outdir = str(tmp_path / 'out')
  score.run(['--input', path, '--model', trained_bundle.path, '--output',
             outdir, '--num_shards', '3'])
  assert sorted(os.listdir(outdir)) == sorted(
      [f'scores-0000{i}-of-00003.jsonl' for i in range(3)] +
      [f'errors-0000{i}-of-00003.jsonl' for i in range(3)])


@pytest.mark.parametrize('name,target', [
    ('score', 'pipeline.score:main'), ('train', 'model.train:main'),
    ('import', 'model.import_keras:main'), ('ja-doc-score', 'pipeline.score:main'),
])
def test_console_entry_points(name, target):
  import subprocess
  import sysconfig
  from importlib.metadata import entry_points
  [ep] = [e for e in entry_points(group='console_scripts')
          if e.name == name and e.value == target]
  assert callable(ep.load())
  script = os.path.join(sysconfig.get_path('scripts'), name)
  out = subprocess.run([script, '--help'], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0 and '--' in out.stdout
