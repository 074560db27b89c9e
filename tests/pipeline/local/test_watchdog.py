"""The watchdog bounds a run, in-process and fast.

Killing real worker processes is in ``test_worker_death.py``; what a failed
run leaves in its output folder is in ``tests/pipeline/io/test_outdir.py``.
"""

import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.local import watchdog


def test_job_timeout_stops_the_wait():
  def slow(x):
    time.sleep(3)
    return x

  p = beam.Pipeline(options=PipelineOptions(['--job_timeout_secs', '0.5']))
  _ = p | 'Create' >> beam.Create([1]) | 'Slow' >> beam.Map(slow)
  with pytest.raises(watchdog.JobTimedOut, match='--job_timeout_secs=0.5'):
    watchdog.run_and_wait(p)


def test_abort_messages_name_the_output_folder():
  died = watchdog.WorkerDied('Worker subprocess exited with return code 137')
  line = died.explain('out/x')
  assert line.startswith('an SDK worker process died during the run '
                         '(Worker subprocess exited with return code 137)')
  assert 'removed from out/x' in line and 'Rerun' in line
  assert watchdog.JobTimedOut(2).explain('o').startswith(
      'the job ran longer than --job_timeout_secs=2')
