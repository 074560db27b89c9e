"""``gs://`` for real, without Google: a scoring run whose bundle, input and
output are all on a GCS emulator (#23, item 5).

The emulator (`tests.clusters.gcs`) is a process of its own, reached by the
real ``google-cloud-storage`` client that Beam's ``gcsio`` uses. The command
runs as a user types it, ``python -m pipeline.score --input 'gs://...'
--model gs://... --output gs://...``, on the DirectRunner in both its
shapes: worker processes (started warm by `pipeline.local.warm_workers`,
which must reach the emulator too) and one in-process worker. Its records
must equal a local run's on the same documents: the same ids, scores within
1e-6, the same errors; its output folder holds the names a local one would.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from pipeline.io import outdir as outdir_names
from tests.clusters import gcs
from tests.pipeline.cli.test_cli import FOREIGN, OWN_STDERR
from tests.pipeline.cli.test_score import _read_errors, _read_scores
from tests.pipeline.test_flink_spark import (_assert_same_records,
                                             _mixed_lines)

# Each test starts the emulator and the command as processes of their own.
pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FILES = 3
_SHARD = re.compile(r'(scores|_errors)-(\d{5})-of-(\d{5})\.jsonl$')


@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
  """The GCS emulator, shared by the module; its log stays in the tmp path."""
  with gcs.emulator(tmp_path_factory.mktemp('gcs')) as running:
    yield running


@pytest.fixture(scope='module')
def corpus_files(tmp_path_factory, corpus):
  """The mixed corpus (documents past maxlen, empty ones, records that fail)
  in ``FILES`` local JSONL files: ``{'dir', 'good', 'bad'}``."""
  root = tmp_path_factory.mktemp('gcs-corpus')
  lines, good, bad = _mixed_lines(corpus, 'g', 40)
  for i in range(FILES):
    with open(root / f'part-{i}.jsonl', 'wb') as f:
      f.write(b'\n'.join(lines[i::FILES]) + b'\n')
  return {'dir': str(root), 'good': good, 'bad': bad}


@pytest.fixture(scope='module')
def on_gcs(emulator, corpus_files, trained_bundle):
  """The bundle and the corpus uploaded to the emulator: their URLs."""
  from apache_beam.io.filesystems import FileSystems
  from model import storage
  bundle = emulator.url('bundles', 'example')
  with emulator.applied():
    storage.copy_tree(trained_bundle.path, bundle)
    for name in sorted(os.listdir(corpus_files['dir'])):
      with open(os.path.join(corpus_files['dir'], name), 'rb') as f:
        storage.write_bytes(emulator.url('corpus', name), f.read())
    uploaded = [m.path for m in FileSystems.match(
        [emulator.url('corpus', '*.jsonl')])[0].metadata_list]
  assert len(uploaded) == FILES, uploaded
  return {'input': emulator.url('corpus', '*.jsonl'), 'model': bundle}


@pytest.fixture(scope='module')
def local_records(tmp_path_factory, corpus_files, trained_bundle):
  """The records of a local run on the same files (the reference)."""
  from pipeline.cli import score
  out = str(tmp_path_factory.mktemp('gcs-local') / 'out')
  score.run(['--input', os.path.join(corpus_files['dir'], '*.jsonl'),
             '--model', trained_bundle.path, '--output', out,
             '--progress_secs', '0'])
  scores, errors = _read_scores(out, 'jsonl'), _read_errors(out)
  assert len(scores) == corpus_files['good']
  assert len(errors) == corpus_files['bad']
  assert any(r['truncated'] for r in scores)
  return scores, errors


def _download(emulator, url: str, local: str) -> list[str]:
  """Copies the folder ``url`` to ``local``; returns its files' names
  (relative, sorted), read back through Beam's ``FileSystems``."""
  from model import storage
  with emulator.applied():
    names = storage.list_tree(url)
    storage.copy_tree(url, local)
  return names


def _write_earlier_output(emulator, url: str) -> None:
  """A complete earlier output, in three shards: a rerun sets it aside and
  drops it once its own is in place."""
  from model import storage
  with emulator.applied():
    for name in [f'scores-0000{i}-of-00003.jsonl' for i in range(3)] + [
        '_errors-00000-of-00001.jsonl', outdir_names.SUMMARY_NAME]:
      storage.write_bytes(f'{url}/{name}', b'{"earlier": true}\n')


@pytest.mark.parametrize('label,flags,processes', [
    ('worker processes', ['--direct_running_mode', 'multi_processing',
                          '--direct_num_workers', '2'], 2),
    ('one worker', ['--direct_num_workers', '1'], 1),
])
def test_gs_bundle_input_and_output_as_typed(tmp_path, emulator, on_gcs,
                                             corpus_files, local_records,
                                             label, flags, processes):
  output = emulator.url('scores', label.replace(' ', '-'))
  _write_earlier_output(emulator, output)
  scratch = tmp_path / 'tmp'
  scratch.mkdir()
  env = dict(emulator.process_env(), TMPDIR=str(scratch))
  env.pop('TF_CPP_MIN_LOG_LEVEL')  # the command quiets TensorFlow itself
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', '--input', on_gcs['input'],
       '--model', on_gcs['model'], '--output', output, '--progress_secs',
       '0', *flags],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  # The console: the command's own lines, naming the gs:// outputs.
  stdout = done.stdout.splitlines()
  assert len(stdout) == 2, done.stdout
  assert stdout[0].startswith(f'Scored {corpus_files["good"]} documents')
  assert f'{corpus_files["bad"]} errors' in stdout[0]
  assert stdout[1] == (f'Outputs: {output}/scores-*.jsonl; errors: '
                       f'{output}/_errors-*.jsonl; summary: '
                       f'{output}/_SUMMARY.json'), stdout[1]
  others = [l for l in done.stderr.splitlines() if not OWN_STDERR.match(l)]
  assert not others, done.stderr
  assert not FOREIGN.search(done.stdout + done.stderr), done.stderr
  assert os.listdir(scratch) == [], os.listdir(scratch)

  local = str(tmp_path / 'downloaded')
  names = _download(emulator, output, local)
  # The names a local output folder holds: complete shard sets and the
  # summary; the earlier output and every temporary folder are gone.
  assert outdir_names.SUMMARY_NAME in names, names
  shards = [n for n in names if n != outdir_names.SUMMARY_NAME]
  assert shards and all(_SHARD.fullmatch(n) for n in shards), names
  for prefix in ('scores', '_errors'):
    of = {_SHARD.fullmatch(n)[3] for n in shards if n.startswith(prefix)}
    assert len(of) == 1, names
    count = int(of.pop())
    assert sorted(int(_SHARD.fullmatch(n)[2]) for n in shards
                  if n.startswith(prefix)) == list(range(count)), names
  # The earlier run's files would show here as records without an id. The
  # errors of unreadable records name their file: there, on gs://.
  scores, errors = local_records
  on_gs = [{k: v.replace(corpus_files['dir'], emulator.url('corpus'))
            if isinstance(v, str) else v for k, v in e.items()}
           for e in errors]
  assert on_gs != errors
  _assert_same_records(local, 'jsonl', (scores, on_gs), f'gs:// {label}')

  with open(os.path.join(local, outdir_names.SUMMARY_NAME),
            encoding='utf-8') as f:
    record = json.load(f)
  assert record['status'] == 'succeeded'
  assert record['counts']['scored'] == corpus_files['good']
  assert record['counts']['errors'] == corpus_files['bad']
  assert record['input'] == {'pattern': on_gcs['input'], 'files': FILES,
                             'bytes': record['input']['bytes']}
  assert record['input']['bytes'] == sum(
      os.path.getsize(os.path.join(corpus_files['dir'], n))
      for n in os.listdir(corpus_files['dir']))
  assert record['bundle']['path'] == on_gcs['model']
  assert record['outputs'] == {
      'scores': sorted(n for n in shards if n.startswith('scores')),
      'errors': sorted(n for n in shards if n.startswith('_errors'))}
  # Each worker process read the bundle from gs:// and scored documents.
  by_worker = record['scored_by_worker']
  assert len(by_worker) == processes, by_worker
  assert all(n > 0 for n in by_worker.values()), by_worker
  assert sum(by_worker.values()) == corpus_files['good']
  assert record['counts']['models_loaded'] == processes
