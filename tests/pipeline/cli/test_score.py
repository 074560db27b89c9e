"""End-to-end runs of ``python -m pipeline.score`` on real files."""

import csv
import glob
import json
import os
import re

import numpy as np
import pytest

from pipeline.cli import options, score, summary

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
  for path in glob.glob(os.path.join(outdir, '_errors-*-of-*.jsonl')):
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


@pytest.mark.parametrize('scoring_function', ['auto', 'signature'])
def test_scores_match_the_transform(tmp_path, corpus, trained_bundle,
                                    scoring_function):
  path, _, _ = _write_inputs(str(tmp_path / 'in'), corpus, 'jsonl')
  outdir = str(tmp_path / 'out')
  score.run(['--input', path, '--model', trained_bundle.path,
             '--output', outdir, '--scoring_function', scoring_function])
  with open(os.path.join(outdir, '_SUMMARY.json'), encoding='utf-8') as f:
    counts = json.load(f)['counts']
  kind = 'lstm' if scoring_function == 'auto' else 'signature'
  assert counts['models_loaded'] == counts[f'models_loaded_{kind}'] == 1
  assert counts['models_loaded_lstm'] + counts['models_loaded_signature'] == 1
  from model.text import Segmenter
  segmenter, rules = Segmenter(), trained_bundle.tokenizer
  predict = trained_bundle.load_signature(fast=False)
  texts = {d['id']: d['text'] for d in corpus[:DOCS]}
  for r in _read_scores(outdir, 'jsonl'):
    ids, _ = trained_bundle.vocabulary.lookup(
        rules.words(segmenter.segment(texts[r['id']])))
    np.testing.assert_allclose(r['scores'], predict(ids[None, :])[0],
                               atol=1e-5)




def _clean_input(directory, corpus, n=DOCS):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, 'clean.jsonl')
  with open(path, 'w', encoding='utf-8') as f:
    for d in corpus[:n]:
      f.write(json.dumps({'id': d['id'], 'text': d['text']},
                         ensure_ascii=False) + '\n')
  return path


def _contents(outdir):
  out = {}
  for name in sorted(os.listdir(outdir)):
    if name != '_SUMMARY.json':
      with open(os.path.join(outdir, name), 'rb') as f:
        out[name] = f.read()
  return out


@pytest.mark.slow
def test_reruns_replace_earlier_outputs_and_stay_stable(tmp_path, corpus,
                                                        trained_bundle):
  """No flip-flop: two reruns with no errors leave the same set of files."""
  path = _clean_input(str(tmp_path / 'in'), corpus)
  outdir = tmp_path / 'out'
  outdir.mkdir()
  (outdir / 'errors-00000-of-00004.jsonl').write_text('')  # earlier naming
  base = ['--input', path, '--model', trained_bundle.path, '--output',
          str(outdir)]
  score.run(base + ['--num_shards', '3'])
  first = sorted(json.dumps(r, sort_keys=True)
                 for r in _read_scores(str(outdir), 'jsonl'))
  listings = []
  for _ in range(2):
    score.run(base + ['--num_shards', '2'])
    listings.append(sorted(os.listdir(outdir)))
  expected = ['_SUMMARY.json', '_errors-00000-of-00002.jsonl',
              '_errors-00001-of-00002.jsonl', 'scores-00000-of-00002.jsonl',
              'scores-00001-of-00002.jsonl']
  assert listings == [expected, expected]
  second = sorted(json.dumps(r, sort_keys=True)
                  for r in _read_scores(str(outdir), 'jsonl'))
  # Deterministic: the same records, bit for bit (a row's scores do not
  # depend on the batch it lands in).
  assert len(second) == DOCS and first == second


def test_a_failed_run_puts_earlier_outputs_back(tmp_path, corpus,
                                                trained_bundle, monkeypatch,
                                                capsys):
  path = _clean_input(str(tmp_path / 'in'), corpus)
  outdir = str(tmp_path / 'out')
  base = ['--input', path, '--model', trained_bundle.path, '--output', outdir,
          '--num_shards', '2']
  assert score.main(base) == 0
  before = _contents(outdir)
  capsys.readouterr()

  def broken(record, names):
    raise ValueError('disk on fire')
  from pipeline.io import writers
  monkeypatch.setattr(writers, '_flat', broken)
  assert score.main(base + ['--num_shards', '3']) == 1
  err = capsys.readouterr().err
  # Beam's own ERROR log (with the worker's traceback) still shows; the
  # command's last word is one line naming the cause.
  last = [line for line in err.splitlines() if line.startswith('error: ')]
  assert last and 'the pipeline failed' in last[-1]
  assert 'disk on fire' in last[-1]
  assert _contents(outdir) == before  # no beam-temp-*, no _previous/


@pytest.mark.parametrize('fmt,scores_as', [
    ('jsonl', 'list'), ('jsonl', 'columns'), ('csv', 'list'),
    ('csv', 'columns'), ('parquet', 'list'), ('parquet', 'columns'),
    ('tfrecord', 'columns'),
])
def test_outputs_open_as_datasets(tmp_path, corpus, trained_bundle, fmt,
                                  scores_as):
  """pyarrow (and pandas, Spark: the same `_` convention) pointed at OUTDIR
  read exactly the scores, though error shards and the summary lie there."""
  path, good_ids, bad_ids = _write_inputs(str(tmp_path / 'in'), corpus,
                                          'jsonl')
  outdir = str(tmp_path / 'out')
  result = score.run(['--input', path, '--model', trained_bundle.path,
                      '--output', outdir, '--format', fmt, '--scores_as',
                      scores_as, '--num_shards', '3'])
  names = trained_bundle.output_names
  assert _read_errors(outdir) and bad_ids  # error shards are there
  listing = os.listdir(outdir)
  assert not [n for n in listing if not n.startswith(('scores-', '_'))]
  if fmt == 'tfrecord':
    import tensorflow as tf
    ids = []
    for raw in tf.data.TFRecordDataset(
        sorted(glob.glob(os.path.join(outdir, 'scores-*')))):
      feature = tf.train.Example.FromString(raw.numpy()).features.feature
      ids.append(feature['id'].bytes_list.value[0].decode('utf-8'))
      assert all(len(feature[n].float_list.value) == 1 for n in names)
    assert sorted(ids) == sorted(good_ids)
  else:
    import pyarrow.dataset as ds
    table = ds.dataset(outdir, format={'jsonl': 'json'}.get(fmt, fmt)
                       ).to_table()
    assert sorted(map(str, table.column('id').to_pylist())) == sorted(good_ids)
    if scores_as == 'columns':
      assert table.column_names == ['id', *names, 'n_tokens', 'truncated']
    else:
      assert table.column_names == ['id', 'scores', 'n_tokens', 'truncated']
    if fmt == 'parquet':
      import pyarrow.parquet as pq
      assert pq.read_table(outdir).num_rows == len(good_ids)
      try:
        import pandas as pd
      except ImportError:  # not a dependency; pyarrow is what it reads with
        pd = None
      if pd is not None:
        assert len(pd.read_parquet(outdir)) == len(good_ids)
  by_id = {str(r['id']): r for r in _read_scores(outdir, fmt)} if (
      scores_as == 'list') else None
  if by_id:
    assert all(len(r['scores']) == len(names) for r in by_id.values())
  with open(os.path.join(outdir, '_SUMMARY.json'), encoding='utf-8') as f:
    summary = json.load(f)
  assert summary == json.loads(json.dumps(result.summary, default=str))
  assert summary['counts']['scored'] == len(good_ids)
  assert summary['counts']['errors'] == len(bad_ids)
  # Every document scored is counted under the process that scored it.
  assert sum(summary['scored_by_worker'].values()) == len(good_ids)
  assert all(re.fullmatch(r'.+:\d+', w) for w in summary['scored_by_worker'])
  assert summary['options']['output_format'] == fmt
  assert summary['options']['scores_as'] == scores_as
  assert summary['started_at'] <= summary['finished_at']
  assert 'apache-beam' in summary['packages']
  import hashlib
  with open(os.path.join(trained_bundle.path, 'manifest.json'), 'rb') as f:
    assert summary['bundle']['manifest_sha256'] == hashlib.sha256(
        f.read()).hexdigest()
  assert summary['bundle']['checksums'] == trained_bundle.manifest['checksums']
  assert summary['outputs']['scores'] == sorted(
      n for n in listing if n.startswith('scores-'))


def test_empty_input_allowed_gives_empty_outputs(tmp_path, trained_bundle,
                                                 capsys):
  outdir = str(tmp_path / 'out')
  args = ['--input', str(tmp_path / 'nothing-*.jsonl'), '--model',
          trained_bundle.path, '--output', outdir]
  assert score.main(args) == 2
  assert '--allow_empty_input' in capsys.readouterr().err
  assert score.main(args + ['--allow_empty_input']) == 0
  assert 'Scored 0 documents' in capsys.readouterr().out
  import pyarrow.dataset as ds
  assert ds.dataset(outdir, format='json').to_table().num_rows == 0
  assert '_SUMMARY.json' in os.listdir(outdir)


def test_beam_runner_flags_pass_through():
  """Runner-specific flags are Beam's; strict parsing accepts them."""
  args, parsed = options.parse_args([
      '--input', 'x.jsonl', '--model', 'm', '--output', 'o',
      '--runner', 'PortableRunner', '--flink_master', 'host:8081',
      '--parallelism', '4', '--direct_num_workers', '2',
      '--direct_running_mode', 'multi_processing', '--job_endpoint',
      'localhost:8099', '--environment_type', 'LOOPBACK',
      '--temp_location', '/tmp/x', '--num_shards', '3'])
  assert args.num_shards == 3
  flat = parsed.get_all_options()
  assert flat['flink_master'] == 'host:8081' and flat['parallelism'] == 4
  assert flat['environment_type'] == 'LOOPBACK'
  assert flat['num_shards'] == 3


def test_a_failed_write_leaves_no_final_shard(tmp_path):
  """Beam's sinks write to a temporary directory and rename only on success."""
  import apache_beam as beam
  from pipeline.io.writers import WriteScores
  records = [{'id': i, 'scores': [0.5] * 8, 'n_tokens': 3, 'truncated': False}
             for i in range(50)]
  records.append({'id': 'boom', 'scores': {0.5}, 'n_tokens': 1,
                  'truncated': False})  # a set: not JSON serializable
  outdir = str(tmp_path / 'out')
  with pytest.raises(Exception, match='not JSON serializable'):
    with beam.Pipeline() as p:
      _ = p | beam.Create(records) | WriteScores(outdir, 'jsonl', num_shards=1)
  assert glob.glob(os.path.join(outdir, 'scores-*')) == []


def test_columns_need_usable_output_names():
  from pipeline.io.writers import score_fields
  assert score_fields(['a', 'b'], 'columns') == [
      'id', 'a', 'b', 'n_tokens', 'truncated']
  for names in (['a', 'a'], ['id', 'b'], ['n_tokens'], ['']):
    with pytest.raises(ValueError, match='cannot be columns'):
      score_fields(names, 'columns')


@pytest.mark.parametrize('name,hidden', [
    ('batch_tokens', False), ('sort_buffer_tokens', False),
    ('keep_fields', False), ('token', True), ('access_token', True),
    ('hf-token', True), ('api_key', True), ('dataflow_kms_key', True),
    ('aws_secret_access_key', True), ('hdfs_password', True),
    ('azure_connection_string', True), ('gcp_credentials', True),
    ('AUTH_HEADER', True), ('author', False)])
def test_summary_hides_only_options_that_may_hold_secrets(name, hidden):
  assert (summary.redacted({name: 'v'})[name] == '<redacted>') is hidden


def test_local_worker_processes_log_at_the_commands_level():
  """Beam's harness in local worker processes logs at --log_level (their
  lines reach this console); remote workers keep Beam's own level."""
  flags = score._harness_log_flags  # pylint: disable=protected-access
  assert flags([], 'ERROR', True) == ['--default_sdk_harness_log_level',
                                      'ERROR']
  assert flags(['--log_level', 'INFO'], 'INFO', True)[-1] == 'INFO'
  assert flags(['--default_sdk_harness_log_level=DEBUG'], 'ERROR', True) == []
  assert flags([], 'ERROR', False) == []
