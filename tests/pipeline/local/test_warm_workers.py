"""Warm worker processes: Beam's jobs run in them, and nothing waits on them.

Real processes throughout: `pipeline.local.warm_workers.start` starts the warm
process, Beam's FnApiRunner starts its clients, and the jobs run Beam's own
SDK harness in the processes the warm one forked.
"""

import json
import os
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.local import machine, warm_workers
from runtime.cores import available_cores
from tests import procs
from tests.commands import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not warm_workers.supported(),
                       reason='warm workers run on Linux only')]


def _where(x):
  """Which process handled ``x``, and its parent."""
  return json.dumps([x, os.getpid(), procs.parent(os.getpid())])


def _run_job(warm, workers: int, tmp_path, n: int = 60, fn=_where):
  """Runs ``fn`` (which returns JSON) on ``0..n-1`` spread over the workers;
  returns its rows."""
  runner = warm.runner(PipelineOptions(['--direct_num_workers',
                                        str(workers)]))
  out = str(tmp_path / 'rows')
  with beam.Pipeline(runner=runner, options=runner.options) as p:
    _ = (p | 'Create' >> beam.Create(range(n)) | 'Spread' >> beam.Reshuffle()
         | 'Apply' >> beam.Map(fn)
         | 'Write' >> beam.io.WriteToText(out))
  rows = []
  for name in os.listdir(tmp_path):
    if name.startswith('rows'):
      with open(tmp_path / name, encoding='utf-8') as f:
        rows += [json.loads(line) for line in f]
  return rows


def _exited(process, secs: float = 30) -> bool:
  try:
    process.wait(secs)
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def test_a_job_runs_in_the_processes_the_warm_one_forked(tmp_path,
                                                         trained_bundle):
  warm = warm_workers.start(2, model=trained_bundle.path, tf_threads=1)
  try:
    rows = _run_job(warm, 2, tmp_path)
  finally:
    warm.close()
  assert sorted(r[0] for r in rows) == list(range(60))
  zygote = warm.process.pid
  assert {r[2] for r in rows} == {zygote}, rows  # forked by the warm process
  assert zygote not in {r[1] for r in rows}
  assert warm.process.poll() is not None
  assert not os.path.exists(warm.socket_path)


def _collector(x):
  """The collector's state in the worker process that handles ``x``."""
  import gc  # pylint: disable=import-outside-toplevel
  return json.dumps([x, gc.isenabled(), gc.get_freeze_count()])


def test_forked_workers_collect_and_skip_what_the_warm_process_made(
    tmp_path, trained_bundle):
  """Python's recipe for fork without exec: the warm process imports with
  the collector paused and freezes before it forks; each worker resumes it."""
  warm = warm_workers.start(2, model=trained_bundle.path, tf_threads=1)
  try:
    rows = _run_job(warm, 2, tmp_path, n=20, fn=_collector)
  finally:
    warm.close()
  assert sorted(r[0] for r in rows) == list(range(20))
  # Beam's and TensorFlow's modules, frozen in the warm process.
  assert all(r[1] and r[2] > 100_000 for r in rows), rows


def test_workers_without_a_warm_process_start_cold(tmp_path, trained_bundle):
  """More workers than warm processes: the rest run Beam's own worker."""
  warm = warm_workers.start(1, model=trained_bundle.path)
  try:
    rows = _run_job(warm, 2, tmp_path)
  finally:
    warm.close()
  assert sorted(r[0] for r in rows) == list(range(60))
  assert _exited(warm.process)


def test_a_warm_process_that_no_job_took_ends_when_closed(trained_bundle):
  warm = warm_workers.start(2, model=trained_bundle.path)
  started = time.monotonic()
  warm.close()
  assert warm.process.poll() is not None
  assert time.monotonic() - started < 15
  assert not os.path.exists(os.path.dirname(warm.socket_path))


def test_a_warm_process_ends_with_its_launcher(tmp_path, trained_bundle):
  """Its stdin is a pipe from the launcher: at its end, the warm process and
  its forks exit (nothing outlives a killed launcher)."""
  warm = warm_workers.start(2, model=trained_bundle.path)
  zygote = warm.process
  deadline = time.monotonic() + 120
  forks = []
  while time.monotonic() < deadline and len(forks) < 2:
    forks = procs.children(zygote.pid)
    time.sleep(0.1)
  assert len(forks) == 2
  zygote.stdin.close()  # As when the launcher dies.
  assert _exited(zygote)
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline and any(procs.alive(p) for p in forks):
    time.sleep(0.1)
  assert not any(procs.alive(p) for p in forks)
  warm.close()



BIG = 17 << 20  # two workers' worth (pipeline.local.machine), and more


@pytest.fixture
def big_input(tmp_path):
  path = tmp_path / 'big.jsonl'
  with open(path, 'wb') as f:
    f.truncate(BIG)
  return str(path)


@pytest.mark.parametrize('flags,workers', [
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '2'], 2),
    (['--direct_running_mode=multi_processing', '--direct_num_workers=3'], 3),
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '2', '--warm_workers', 'off'], 0),
    (['--direct_num_workers', '1'], 0),
    (['--direct_running_mode', 'multi_threading', '--direct_num_workers',
      '2'], 0),
    (['--runner', 'FlinkRunner', '--direct_running_mode', 'multi_processing',
      '--direct_num_workers', '2'], 0),
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      'two'], 0),
    (['-h', '--direct_running_mode', 'multi_processing'], 0),
    # --watch scores in its own process (a usage error names these flags).
    (['--watch', '--direct_running_mode', 'multi_processing',
      '--direct_num_workers', '2'], 0),
])
def test_early_start_reads_the_command_line(flags, workers, tmp_path,
                                            trained_bundle):
  argv = ['--input', str(tmp_path / 'small.jsonl'), '--model',
          trained_bundle.path, '--output', str(tmp_path / 'out')] + flags
  warm_workers.start_early(argv)
  # The plan's settings for such a job take them.
  threads = machine.local_tf_threads(-1, max(workers, 1),
                                     available_cores())
  taken = warm_workers.take_early(workers, model=trained_bundle.path,
                                  tf_threads=threads,
                                  scoring_function='auto')
  try:
    assert (taken is not None) == bool(workers)
  finally:
    if taken is not None:
      taken.close()
  assert warm_workers.take_early(workers, model=trained_bundle.path,
                                 tf_threads=threads,
                                 scoring_function='auto') is None


def test_early_start_follows_the_input_size(big_input, tmp_path,
                                            trained_bundle):
  """No runner flag: a large local input means one worker per core."""
  cores = available_cores()
  argv = ['--input', big_input, '--model', trained_bundle.path, '--output',
          str(tmp_path / 'out')]
  warm_workers.start_early(argv)
  workers = min(cores, BIG // machine.WARM_WORKER_BYTES)
  taken = warm_workers.take_early(workers, model=trained_bundle.path,
                                  tf_threads=max(1, cores // workers),
                                  scoring_function='auto')
  try:
    assert (taken is not None) == (cores > 1)
  finally:
    if taken is not None:
      taken.close()


def test_early_workers_that_do_not_fit_the_plan_are_stopped(tmp_path,
                                                            trained_bundle):
  warm_workers.start_early([
      '--input', str(tmp_path / 'x.jsonl'), '--model', trained_bundle.path,
      '--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '2'])
  early = warm_workers._early  # pylint: disable=protected-access
  assert early is not None
  assert warm_workers.take_early(2, model=trained_bundle.path, tf_threads=1,
                                 scoring_function='signature') is None
  assert _exited(early[1].process)


_ENTRY = r'''
import sys
from pipeline.local import warm_workers

def record(argv):
  print({'argv': argv, 'beam_imported': 'apache_beam' in sys.modules})
  sys.exit(0)

warm_workers.start_early = record
sys.argv = ['ja-doc-score', '--input', 'x.jsonl']
{call}
'''


@pytest.mark.parametrize('call', [
    "import runpy; runpy.run_module('pipeline.score', run_name='__main__')",
    'from pipeline.cli import entry_points; entry_points.score()',
])
def test_both_entry_points_start_workers_before_importing_beam(call):
  """``python -m pipeline.score`` and ``ja-doc-score`` start the warm workers
  before Beam's import (2 s), with the command line as typed."""
  import ast
  import subprocess
  import sys
  root = ROOT
  out = subprocess.run([sys.executable, '-c', _ENTRY.replace('{call}', call)],
                       cwd=root, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  report = ast.literal_eval(out.stdout.strip().splitlines()[-1])
  assert report == {'argv': ['--input', 'x.jsonl'], 'beam_imported': False}
