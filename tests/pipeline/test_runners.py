"""The same pipeline, unchanged, on three runners: identical outputs.

* the DirectRunner in-process;
* the DirectRunner with two worker processes;
* Beam's PortableRunner against a local job service with an external worker
  pool, the way Flink runs Python workers.
"""

import glob
import json
import os

import numpy as np
import pytest

from pipeline.cli import score, summary
from tests import services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def portable_services(tmp_path_factory):
  logs = tmp_path_factory.mktemp('services')
  job_port, pool_port = services.free_port(), services.free_port()
  with services.job_service(logs, job_port), services.worker_pool(
      logs, pool_port):
    yield f'localhost:{job_port}', f'localhost:{pool_port}'


def _read(outdir):
  scores, errors = {}, {}
  for path in glob.glob(os.path.join(outdir, 'scores-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      for line in f:
        r = json.loads(line)
        assert r['id'] not in scores
        scores[r['id']] = r
  for path in glob.glob(os.path.join(outdir, '_errors-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      for line in f:
        r = json.loads(line)
        errors[str(r['id'])] = r
  return scores, errors


@pytest.mark.slow
def test_three_runners_write_the_same_records(tmp_path, corpus, trained_bundle,
                                              portable_services):
  path = tmp_path / 'docs.jsonl'
  lines = [json.dumps({'id': d['id'], 'text': d['text']}, ensure_ascii=False)
           for d in corpus[:60]]
  lines += ['{"id": "bad", "text": 3}', 'not json',
            json.dumps({'id': 'long', 'text': corpus[0]['text'] * 80},
                       ensure_ascii=False)]
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  job, pool = portable_services
  runs = {
      'direct': [],
      'multiprocess': ['--direct_running_mode', 'multi_processing',
                       '--direct_num_workers', '2'],
      'portable': ['--runner', 'PortableRunner', '--job_endpoint', job,
                   '--environment_type', 'EXTERNAL',
                   '--environment_config', pool],
  }
  outputs = {}
  for name, flags in runs.items():
    outdir = str(tmp_path / name)
    score.run(['--input', str(path), '--model', trained_bundle.path,
               '--output', outdir, '--num_shards', '2'] + flags)
    outputs[name] = _read(outdir)
  base_scores, base_errors = outputs['direct']
  assert len(base_scores) == 61 and set(base_errors) == {
      'bad', f'{path}:62'}
  assert base_scores['long']['truncated']
  for name, (scores, errors) in outputs.items():
    assert set(scores) == set(base_scores), name
    assert errors == base_errors, name
    for doc_id, record in scores.items():
      want = base_scores[doc_id]
      assert (record['n_tokens'], record['truncated']) == (
          want['n_tokens'], want['truncated'])
      # Worker processes run TensorFlow on their share of the cores, which
      # can sum in another order: equal within 1e-6, not bit for bit.
      np.testing.assert_allclose(record['scores'], want['scores'], atol=1e-6,
                                 err_msg=f'{name} {doc_id}')


@pytest.mark.slow
def test_one_model_per_process_shared_across_threads(tmp_path, corpus,
                                                     trained_bundle):
  path = tmp_path / 'docs.jsonl'
  path.write_text(''.join(
      json.dumps({'id': d['id'], 'text': d['text']}, ensure_ascii=False) + '\n'
      for d in corpus[:80]), encoding='utf-8')
  result = score.run([
      '--input', str(path), '--model', trained_bundle.path, '--output',
      str(tmp_path / 'out'), '--direct_running_mode', 'multi_threading',
      '--direct_num_workers', '4', '--batch_tokens', '600'
  ])
  totals = summary.summarize(result)
  assert totals['models_loaded'] == 1
  assert totals['scored'] == 80


@pytest.mark.slow
def test_setup_file_stages_every_package(tmp_path):
  """What Beam's --setup_file sends to Dataflow/Flink workers: the source
  distribution Beam builds with ``setup.py sdist`` (its stager's fallback
  where ``build`` is not installed), every sub-package in it, no tests."""
  import subprocess
  import sys
  import tarfile
  subprocess.run([sys.executable, 'setup.py', 'sdist', '--dist-dir',
                  str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
  [sdist] = tmp_path.glob('*.tar.gz')
  with tarfile.open(sdist) as tar:
    names = tar.getnames()
  for module in ('runtime/internals.py', 'model/bundle.py',
                 'transforms/score.py', 'pipeline/score.py',
                 'pipeline/cli/score.py', 'pipeline/io/readers.py',
                 'pipeline/local/warm_workers.py'):
    assert any(n.endswith(module) for n in names), module
  assert not any('/tests/' in n or '/bench/' in n for n in names)
