"""What a failed run leaves in its output directory, in-process and fast.

Killing real worker processes is in ``test_worker_death.py``.
"""

import os
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import watchdog


def _write(path, text='x\n'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)


def _earlier_run(outdir):
  names = ['scores-00000-of-00002.jsonl', 'scores-00001-of-00002.jsonl',
           'errors-00000-of-00001.jsonl']
  for name in names:
    _write(os.path.join(outdir, name))
  return names


def test_a_failed_run_removes_its_temp_folders_and_keeps_earlier_output(
    tmp_path):
  outdir = str(tmp_path)
  earlier = _earlier_run(outdir)
  _write(os.path.join(outdir, 'beam-temp-scores-old', 'left.jsonl'))
  before = watchdog._snapshot(outdir)  # pylint: disable=protected-access
  _write(os.path.join(outdir, 'beam-temp-scores-new', 'part.jsonl'))
  os.makedirs(os.path.join(outdir, 'beam-temp-errors-new'))  # still empty
  removed = watchdog.remove_partial_output(outdir, before)
  assert sorted(os.path.basename(p) for p in removed) == [
      'beam-temp-errors-new', 'beam-temp-scores-new']
  # What an earlier run left is not this run's to remove.
  assert sorted(os.listdir(outdir)) == sorted(
      earlier + ['beam-temp-scores-old'])


def test_a_failed_run_that_replaced_a_shard_removes_the_whole_set(tmp_path):
  outdir = str(tmp_path)
  earlier = _earlier_run(outdir)
  before = watchdog._snapshot(outdir)  # pylint: disable=protected-access
  replaced = os.path.join(outdir, earlier[0])
  _write(replaced, 'new\n')
  later = time.time() + 5
  os.utime(replaced, (later, later))
  _write(os.path.join(outdir, 'errors-00000-of-00003.jsonl'))  # its own
  watchdog.remove_partial_output(outdir, before)
  assert os.listdir(outdir) == []


def test_a_failure_after_the_rename_leaves_no_final_shard(tmp_path):
  """The pipeline fails once its sink has put shards under final names."""
  outdir = str(tmp_path / 'out')
  _earlier_run(outdir)

  def fail(name):
    raise ValueError(f'fails after writing {name}')

  p = beam.Pipeline(options=PipelineOptions([]))
  files = (p | 'Create' >> beam.Create(['a', 'b'])
           | 'Write' >> beam.io.WriteToText(
               os.path.join(outdir, 'scores'), file_name_suffix='.jsonl',
               shard_name_template='-SSSSS-of-NNNNN'))
  _ = files | 'Fail' >> beam.Map(fail)
  with pytest.raises(ValueError, match='fails after writing'):
    watchdog.run_and_wait(p, outdir)
  assert os.listdir(outdir) == []


def test_job_timeout_stops_the_wait(tmp_path):
  def slow(x):
    time.sleep(3)
    return x

  p = beam.Pipeline(options=PipelineOptions(['--job_timeout_secs', '0.5']))
  _ = p | 'Create' >> beam.Create([1]) | 'Slow' >> beam.Map(slow)
  with pytest.raises(watchdog.JobTimedOut, match='--job_timeout_secs=0.5'):
    watchdog.run_and_wait(p, str(tmp_path))
