"""The one way a run leaves its output folder (`pipeline.io.outdir`)."""

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.io import outdir
from pipeline.local import watchdog


def _write(path, text='x\n'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)


def _read_all(folder):
  found = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, encoding='utf-8') as f:
        found[os.path.relpath(path, folder)] = f.read()
  return found


def _earlier_run(folder):
  names = {'scores-00000-of-00002.jsonl': 'a\n',
           'scores-00001-of-00002.jsonl': 'b\n',
           '_errors-00000-of-00001.jsonl': '',
           'errors-00000-of-00001.jsonl': 'old name\n',
           '_SUMMARY.json': '{}'}
  for name, text in names.items():
    _write(os.path.join(folder, name), text)
  return names


@pytest.mark.parametrize('written', [
    [],  # failed before the sinks wrote anything
    ['beam-temp-scores-1/part'],  # failed while writing
    ['beam-temp-_errors-2/part', 'scores-00000-of-00003.jsonl'],  # renaming
    ['scores-00000-of-00001.jsonl', '_errors-00000-of-00001.jsonl'],  # after
])
def test_a_failed_run_leaves_the_earlier_outputs_as_they_were(tmp_path,
                                                              written):
  folder = str(tmp_path)
  earlier = _earlier_run(folder)
  _write(os.path.join(folder, 'unrelated.txt'), 'mine\n')
  assert outdir.set_aside_earlier_outputs(folder) == len(earlier)
  for name in written:
    _write(os.path.join(folder, name), 'partial\n')
  outdir.finish(folder, succeeded=False, output_format='jsonl')
  assert _read_all(folder) == {**earlier, 'unrelated.txt': 'mine\n'}


def test_a_successful_run_drops_the_earlier_outputs(tmp_path):
  folder = str(tmp_path)
  _earlier_run(folder)
  outdir.set_aside_earlier_outputs(folder)
  _write(os.path.join(folder, 'beam-temp-scores-1', 'part'))
  _write(os.path.join(folder, 'scores-00000-of-00002.jsonl'), 'new\n')
  _write(os.path.join(folder, 'scores-00001-of-00002.jsonl'), '')
  outdir.finish(folder, succeeded=True, output_format='jsonl')
  # The empty JSONL shard goes too: pyarrow refuses empty JSON files.
  assert _read_all(folder) == {'scores-00000-of-00002.jsonl': 'new\n'}
  assert outdir.shard_names(folder, outdir.SCORES_PREFIX) == [
      'scores-00000-of-00002.jsonl']


def test_a_failure_after_the_rename_leaves_the_earlier_outputs(tmp_path):
  """The pipeline fails once its sink has put shards under final names."""
  folder = str(tmp_path / 'out')
  earlier = _earlier_run(folder)
  outdir.set_aside_earlier_outputs(folder)

  def fail(name):
    raise ValueError(f'fails after writing {name}')

  p = beam.Pipeline(options=PipelineOptions([]))
  files = (p | 'Create' >> beam.Create(['a', 'b'])
           | 'Write' >> beam.io.WriteToText(
               os.path.join(folder, outdir.SCORES_PREFIX),
               file_name_suffix='.jsonl',
               shard_name_template='-SSSSS-of-NNNNN'))
  _ = files | 'Fail' >> beam.Map(fail)
  with pytest.raises(ValueError, match='fails after writing'):
    watchdog.run_and_wait(p)
  outdir.finish(folder, succeeded=False, output_format='jsonl')
  assert _read_all(folder) == earlier


# --- A run that was killed: the next one recovers -----------------------------


class _Killed(BaseException):
  """The launcher died here (SIGKILL, power loss)."""


def _kill_after(monkeypatch, steps):
  """Makes the output folder's file operations die at operation ``steps``
  (one file each), as a kill at any moment would."""
  from apache_beam.io.filesystems import FileSystems

  from model import storage
  count = [0]

  def step():
    count[0] += 1
    if count[0] > steps:
      raise _Killed()

  rename, delete = FileSystems.rename, FileSystems.delete
  remove_tree, write_bytes = storage.remove_tree, storage.write_bytes

  def one_by_one(function):
    def each(paths, *more):
      for i, path in enumerate(paths):
        step()
        function([path], *[[m[i]] for m in more])
    return each

  def once(function):
    def call(*args, **kwargs):
      step()
      return function(*args, **kwargs)
    return call

  monkeypatch.setattr(FileSystems, 'rename', one_by_one(rename))
  monkeypatch.setattr(FileSystems, 'delete', one_by_one(delete))
  monkeypatch.setattr(storage, 'remove_tree', once(remove_tree))
  monkeypatch.setattr(storage, 'write_bytes', once(write_bytes))
  return count


def _new_run(folder, succeeded):
  """What one run does to the folder: set aside, write, finish."""
  outdir.set_aside_earlier_outputs(folder)
  _write(os.path.join(folder, 'beam-temp-scores-9', 'part'), 'temp\n')
  for name in ('scores-00000-of-00003.jsonl', 'scores-00001-of-00003.jsonl',
               'scores-00002-of-00003.jsonl', '_errors-00000-of-00001.jsonl'):
    _write(os.path.join(folder, name), f'new {name}\n')
  outdir.finish(folder, succeeded=succeeded, output_format='jsonl',
                complete=lambda: _write(os.path.join(folder, '_SUMMARY.json'),
                                        '{"new": 1}'))


@pytest.mark.parametrize('succeeded', [True, False])
def test_a_kill_at_any_moment_loses_nothing_of_the_earlier_output(
    tmp_path, monkeypatch, succeeded):
  """Killed after any number of file operations, then recovered by the next
  run: the folder holds the earlier output, byte for byte, or the killed
  run's complete one; nothing else."""
  complete = None
  steps = 0
  while True:
    folder = str(tmp_path / f'{succeeded}-{steps}')
    earlier = _earlier_run(folder)
    if complete is None:
      new = str(tmp_path / 'complete')
      _earlier_run(new)
      _new_run(new, succeeded)
      complete = _read_all(new)
    with monkeypatch.context() as patch:
      _kill_after(patch, steps)
      try:
        _new_run(folder, succeeded)
        finished = True
      except _Killed:
        finished = False
    outdir.recover(folder)
    assert _read_all(folder) in (earlier, complete), steps
    if finished:
      assert _read_all(folder) == complete
      break
    steps += 1
  assert steps > 10  # every moment of the run was tried


def test_recover_says_what_it_did(tmp_path):
  folder = str(tmp_path)
  assert outdir.recover(folder) == {}
  earlier = _earlier_run(folder)
  outdir.set_aside_earlier_outputs(folder)
  _write(os.path.join(folder, 'beam-temp-scores-1', 'part'))
  _write(os.path.join(folder, 'scores-00000-of-00009.jsonl'), 'partial\n')
  assert outdir.recover(folder) == {'temporary_folders': 1, 'partial': 1,
                                    'restored': len(earlier)}
  assert _read_all(folder) == earlier
  assert outdir.recover(folder) == {}


@pytest.mark.slow
def test_the_run_after_a_sigkill_recovers_and_says_so(tmp_path,
                                                      trained_bundle):
  """A real launcher killed while it scores; the next run puts the earlier
  output back, completes, and says what it recovered."""
  import json
  import signal
  import subprocess
  import sys
  import time

  from tests.commands import ROOT
  docs = tmp_path / 'docs.jsonl'
  with open(ROOT + '/examples/corpus.jsonl', encoding='utf-8') as f:
    corpus = f.read()
  docs.write_text(corpus * 20, encoding='utf-8')  # several seconds of work
  out = tmp_path / 'out'
  args = ['--input', str(docs), '--model', trained_bundle.path,
          '--output', str(out), '--progress_secs', '0',
          '--direct_num_workers', '1']
  from pipeline.cli import score
  assert score.main(args) == 0
  earlier = _read_all(str(out))
  env = dict(os.environ, PYTHONPATH=ROOT)
  run = subprocess.Popen([sys.executable, '-m', 'pipeline.score', *args],
                         env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and not (out / '_previous').exists():
    time.sleep(0.05)
  assert (out / '_previous').exists()
  time.sleep(1.0)
  run.send_signal(signal.SIGKILL)
  run.wait()
  assert _read_all(str(out)) != earlier  # left as it was when killed
  assert score.main(args) == 0
  with open(out / '_SUMMARY.json', encoding='utf-8') as f:
    recovered = json.load(f)['recovered']
  assert recovered.get('restored') == len(earlier)
  after = _read_all(str(out))
  assert {k: v for k, v in after.items() if k != '_SUMMARY.json'} == {
      k: v for k, v in earlier.items() if k != '_SUMMARY.json'}


def test_a_partial_set_of_shards_with_nothing_set_aside_is_removed(tmp_path):
  """A first run killed while its sink renamed the shards into place."""
  folder = str(tmp_path)
  _write(os.path.join(folder, 'scores-00000-of-00003.jsonl'), 'a\n')
  _write(os.path.join(folder, 'scores-00002-of-00003.jsonl'), 'c\n')
  _write(os.path.join(folder, 'notes.txt'), 'mine\n')
  assert outdir.recover(folder) == {'partial': 2}
  assert _read_all(folder) == {'notes.txt': 'mine\n'}
  complete = _earlier_run(folder)  # every set whole: kept
  assert outdir.recover(folder) == {}
  assert _read_all(folder) == {**complete, 'notes.txt': 'mine\n'}
