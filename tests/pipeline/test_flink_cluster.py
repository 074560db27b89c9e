"""The scorer on a real Flink session cluster, submitted as users submit.

`tests.clusters.flink` starts a Flink 1.19 JobManager and two TaskManagers
of one slot, each with its own Beam worker pool, as separate processes; the
jobs go to it exactly as the README's "An existing Flink cluster" section
says: ``python -m pipeline.score ... --runner FlinkRunner --flink_master
localhost:PORT --parallelism 2 --environment_type EXTERNAL
--environment_config localhost:PORT``. Their records must equal the
DirectRunner's, and both slots must score: two Python processes in
``_SUMMARY.json``'s ``scored_by_worker``, from many files and from one.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from pipeline import job_servers
from tests import procs, services
from tests.clusters import flink
from tests.pipeline.cli.test_cli import FOREIGN, OWN_STDERR
from tests.pipeline.cli.test_score import _read_errors, _read_scores
# The mixed corpus and the DirectRunner's records for it (fixtures).
from tests.pipeline.test_flink_spark import (ROOT, _assert_same_records,
                                             _mixed_lines, direct, mixed)
# The GCS emulator, for the gs:// run (its SDK workers need it too).
from tests.pipeline.test_gcs import emulator

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which('java') is None,
                       reason='Flink runs on Java, which is not installed'),
]
__all__ = ['direct', 'emulator', 'mixed']  # fixtures used by name


@pytest.fixture(scope='module')
def cluster(tmp_path_factory, emulator):
  """The session cluster, shared by the module; its logs stay in its
  folder (named in every failure message)."""
  with flink.session_cluster(tmp_path_factory.mktemp('flink-cluster'),
                             pool_env=emulator.env) as running:
    yield running


def _score(cluster, *args, env=None) -> tuple[subprocess.CompletedProcess,
                                              dict]:
  """``python -m pipeline.score ARGS`` sent to ``cluster``; its summary."""
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', *args, '--progress_secs', '10',
       *cluster.beam_flags()],
      cwd=ROOT, env=env or services.env(), capture_output=True, text=True,
      timeout=600, check=False)
  assert done.returncode == 0, (done.stderr[-3000:], str(cluster.logs))
  # Only the command's own lines (#23, item 8).
  assert not FOREIGN.search(done.stdout + done.stderr), done.stderr
  assert all(OWN_STDERR.match(line) for line in done.stderr.splitlines()), (
      done.stderr)
  output = args[list(args).index('--output') + 1]
  if output.startswith('gs://'):
    return done, {}
  with open(f'{output}/_SUMMARY.json', encoding='utf-8') as f:
    return done, json.load(f)


def _assert_every_slot_scored(summary: dict, cluster, expected: int) -> None:
  workers = summary['scored_by_worker']
  assert sum(workers.values()) == expected, workers
  assert len(workers) == cluster.slots, (workers, str(cluster.logs))
  assert min(workers.values()) > 0, workers
  # Each slot's process loaded the model once.
  assert summary['counts']['models_loaded'] == cluster.slots, summary['counts']


def test_the_cluster_has_two_taskmanagers_of_one_slot(cluster):
  overview = cluster.overview()
  assert (overview['taskmanagers'], overview['slots-total']) == (2, 2)
  assert overview['flink-version'] == flink.FLINK_VERSION


def test_many_files_match_the_direct_runner(tmp_path, cluster, mixed, direct,
                                            trained_bundle):
  before = cluster.workers_started()
  outdir = str(tmp_path / 'out')
  _, summary = _score(cluster, '--input', mixed['pattern'], '--model',
                      trained_bundle.path, '--output', outdir)
  _assert_same_records(outdir, 'jsonl', direct, 'flink cluster')
  assert summary['counts']['scored'] == mixed['good']
  assert summary['counts']['errors'] == mixed['bad']
  _assert_every_slot_scored(summary, cluster, mixed['good'])
  # One SDK worker per TaskManager lasts the job: not one for every stage
  # (Beam's runner on the TaskManagers' classpath, `tests.clusters.flink`).
  after = cluster.workers_started()
  assert {pool: after[pool] - before[pool] for pool in after} == {
      'pool-1': 1, 'pool-2': 1}, (before, after, str(cluster.logs))


def test_one_file_is_scored_by_every_slot(tmp_path, cluster, corpus,
                                          trained_bundle):
  """No --split_bytes: the command cuts one file for --parallelism slots."""
  lines, good, bad = _mixed_lines(corpus, 'one', 600)
  path = tmp_path / 'one.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  outdir = str(tmp_path / 'out')
  done, summary = _score(cluster, '--input', str(path), '--model',
                         trained_bundle.path, '--output', outdir)
  assert len(_read_scores(outdir, 'jsonl')) == good
  assert len(_read_errors(outdir)) == bad
  _assert_every_slot_scored(summary, cluster, good)
  assert done.stdout.startswith(f'Scored {good:,} documents')


def test_gs_paths_on_the_cluster(tmp_path, cluster, emulator, mixed, direct,
                                 trained_bundle):
  """Bundle, input and output on the GCS emulator: the launcher and every
  TaskManager's SDK workers read and write them through Beam's gcsio."""
  from model import storage
  folder = os.path.dirname(mixed['pattern'])
  with emulator.applied():
    storage.copy_tree(trained_bundle.path, emulator.url('flink', 'bundle'))
    for local in sorted(glob.glob(mixed['pattern'])):
      with open(local, 'rb') as f:
        storage.write_bytes(
            emulator.url('flink', 'corpus', os.path.basename(local)), f.read())
  output = emulator.url('flink', 'scores')
  _score(cluster, '--input', emulator.url('flink', 'corpus', '*.jsonl'),
         '--model', emulator.url('flink', 'bundle'), '--output', output,
         env=emulator.process_env())
  local = tmp_path / 'copy'
  with emulator.applied():
    storage.copy_tree(output, str(local))
  # The errors name the files they came from: on gs:// now.
  want_scores, want_errors = direct
  on_gs = [{k: v.replace(folder, emulator.url('flink', 'corpus'))
            if isinstance(v, str) else v for k, v in e.items()}
           for e in want_errors]
  _assert_same_records(str(local), 'jsonl', (want_scores, on_gs),
                       'flink gs://')
  with open(local / '_SUMMARY.json', encoding='utf-8') as f:
    summary = json.load(f)
  _assert_every_slot_scored(summary, cluster, mixed['good'])


def test_a_jobs_python_workers_end_soon_after_it(tmp_path, cluster, corpus,
                                              trained_bundle):
  """A session cluster runs job after job: each job's Python workers (about
  1 GB each) must not outlive it by more than the environment cache the
  command sets (`pipeline.job_servers.ENVIRONMENT_CACHE_MILLIS`), though
  they last the whole job (one a TaskManager). Each sizes TensorFlow to its
  TaskManager's share of the machine's cores (`flink.host_share_env`)."""
  before = cluster.sdk_workers()
  lines, good, _ = _mixed_lines(corpus, 'short', 8)
  path = tmp_path / 'short.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  started = cluster.workers_started()
  _score(cluster, '--input', str(path), '--model', trained_bundle.path,
         '--output', str(tmp_path / 'out'))
  after = cluster.workers_started()
  assert {pool: after[pool] - started[pool] for pool in after} == {
      'pool-1': 1, 'pool-2': 1}, (started, after, str(cluster.logs))
  ended = time.monotonic()
  this_job = cluster.sdk_workers() - before
  assert len(this_job) == cluster.slots, (this_job, str(cluster.logs))
  taskmanagers = sum(name.startswith('taskmanager-')
                     for name in cluster.processes)
  share = flink.host_share_env(taskmanagers)
  for pid in this_job:
    environ = procs.environ(pid)
    assert {k: environ.get(k) for k in share} == share, (pid, share)
  limit = job_servers.ENVIRONMENT_CACHE_MILLIS / 1000 + 30
  while this_job & cluster.sdk_workers() and time.monotonic() - ended < limit:
    time.sleep(1)
  assert not this_job & cluster.sdk_workers(), (
      f'SDK workers {sorted(this_job)} still ran {limit:.0f} s after their '
      f'job; see {cluster.logs}')


@pytest.mark.parametrize('taskmanagers,cores,threads', [
    (2, 2, '1'), (1, 2, '2'), (2, 16, '8'), (3, 2, '1')])
def test_each_taskmanager_gets_its_share_of_the_cores(taskmanagers, cores,
                                                       threads):
  """At least one thread each, whatever the count of TaskManagers."""
  assert flink.host_share_env(taskmanagers, cores) == {
      name: threads for name in flink.TF_THREAD_VARIABLES}
