"""A worker process killed in the middle of a run never hangs the job.

``python -m pipeline.score`` runs as a subprocess on the DirectRunner with two
worker processes and on the portable runner with an external worker pool.
The test kills one SDK worker process (found through psutil; on the
DirectRunner started warm by `pipeline.local.warm_workers` or cold by Beam)
either while it scores or right after it started, before its first
bundle. The run must then fail within a bounded time with one ``error:``
line, leaving no ``scores-*``/``errors-*`` shard and no ``beam-temp-*``
folder behind, or complete with every record. A rerun into the same
directory writes the complete output. Every subprocess has a hard timeout,
so a hang fails the test instead of stalling CI.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import procs, services
from tests.commands import ROOT

HARD_TIMEOUT = 240  # seconds for one scoring subprocess, killed or not
MULTI_PROCESS = ['--direct_running_mode', 'multi_processing',
                 '--direct_num_workers', '2']
# How the DirectRunner's worker processes start (pipeline.local.warm_workers).
STARTS = {'warm': [], 'cold': ['--warm_workers', 'off']}
# Command-line marks of the SDK worker processes that each runner starts.
# A scoring job's cold worker processes (`runtime.sdk_worker`).
DIRECT_WORKER = b'runtime.sdk_worker'
POOL_WORKER = b'SdkHarness('
# pipeline.local.warm_workers: the warm process (it forks the SDK workers, which
# keep its command line) and the client Beam starts for each worker.
WARM_SERVE = b'serve'
WARM_CLIENT = b'connect'
WARM_MARK = b'pipeline.local.warm_workers'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith('linux'),
                       reason='kills worker processes found by '
                       'their command lines (Linux)')]


def _descendants(root: int) -> list[tuple[int, list[bytes]]]:
  """``(pid, command line)`` of every process below ``root``."""
  return [(pid, argv) for pid, _, argv in _tree(root)]


def _tree(root: int) -> list[tuple[int, int, list[bytes]]]:
  """``(pid, parent pid, command line)`` of every process below ``root``."""
  return procs.tree(root)


def _python_workers(root: int, mark: bytes) -> list[int]:
  """SDK worker processes below ``root``: Python itself, not a shell."""
  return [pid for pid, argv in _descendants(root)
          if b'python' in os.path.basename(argv[0]) and
          any(mark in arg for arg in argv)]


def _warm(root: int, role: bytes) -> list[int]:
  """`pipeline.local.warm_workers` processes below ``root``: the SDK workers the
  warm process forked (``serve`` below ``serve``), or Beam's clients."""
  found = _tree(root)
  serving = {pid for pid, _, argv in found
             if WARM_MARK in argv and WARM_SERVE in argv}
  if role == WARM_SERVE:
    return [pid for pid, ppid, _ in found
            if pid in serving and ppid in serving]
  return [pid for pid, _, argv in found if WARM_MARK in argv and role in argv]


def _direct_workers(start: str, role: bytes = WARM_SERVE):
  """A finder of the DirectRunner's SDK worker processes below a pid."""
  if start == 'cold':
    return lambda root: _python_workers(root, DIRECT_WORKER)
  return lambda root: _warm(root, role)


def _scoring(outdir: str) -> bool:
  """A worker has written scored records to a temporary shard."""
  return bool(glob.glob(os.path.join(outdir, 'beam-temp-scores-*', '*')))


def _write_input(tmp_path, corpus, copies: int) -> tuple[str, set, set]:
  """``copies`` times the corpus under new ids, and one unreadable line."""
  path = str(tmp_path / 'docs.jsonl')
  ids = set()
  with open(path, 'w', encoding='utf-8') as f:
    for i in range(copies):
      for doc in corpus:
        ids.add(f'{doc["id"]}-{i}')
        f.write(json.dumps({'id': f'{doc["id"]}-{i}', 'text': doc['text']},
                           ensure_ascii=False) + '\n')
    f.write('{"id": "broken", "text": \n')
  return path, ids, {f'{path}:{len(ids) + 1}'}


def _start(input_path, bundle, outdir, flags) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, '-m', 'pipeline.score', '--input', input_path,
       '--model', bundle, '--output', outdir, '--batch_tokens', '300'] + flags,
      cwd=ROOT, env=services.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _kill_a_worker(proc, root: int, find, when,
                   limit: float = HARD_TIMEOUT) -> list[int]:
  """SIGKILLs one new SDK worker below ``root`` once ``when()`` holds.

  ``find(root)`` lists the workers. Returns the pids of the workers seen
  then, the killed one first.
  """
  old = set(find(root))
  deadline = time.monotonic() + limit
  while time.monotonic() < deadline and proc.poll() is None:
    workers = [pid for pid in find(root) if pid not in old]
    if workers and when():
      os.kill(workers[0], signal.SIGKILL)
      return workers
    time.sleep(0.05)
  proc.kill()
  _, err = proc.communicate()
  pytest.fail(f'no worker to kill (exit {proc.returncode}):\n{err[-3000:]}')


def _finish(proc) -> tuple[int, str, str]:
  try:
    out, err = proc.communicate(timeout=HARD_TIMEOUT)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f'the run hung after a worker was killed:\n{err[-3000:]}')
  return proc.returncode, out, err


def _outputs(outdir: str) -> tuple[list, list]:
  scores, errors = [], []
  for kind, records in (('scores', scores), ('errors', errors)):
    for path in glob.glob(os.path.join(outdir, f'*{kind}-*-of-*')):
      with open(path, encoding='utf-8') as f:
        records += [json.loads(line) for line in f]
  return scores, errors


def _assert_complete(outdir, ids, bad):
  scores, errors = _outputs(outdir)
  score_ids = [r['id'] for r in scores]
  error_ids = [str(r['id']) for r in errors]
  assert sorted(score_ids) == sorted(ids)  # each exactly once
  assert sorted(error_ids) == sorted(bad)
  assert not glob.glob(os.path.join(outdir, 'beam-temp-*'))


def _assert_failed_cleanly(rc, err, outdir):
  # Our one line; a gRPC thread of Beam's may still print its traceback
  # while the process exits, after it.
  ours = [l for l in err.strip().splitlines() if l.startswith('error: ')]
  assert rc == 1 and ours, err[-3000:]
  last = ours[-1]
  assert last.startswith('error: an SDK worker process died'), last
  assert 'Rerun' in last
  left = sorted(os.listdir(outdir)) if os.path.isdir(outdir) else []
  assert not [n for n in left if n.startswith(('scores-', 'errors-', '_errors-',
                                               'beam-temp-'))], left


def _killed_while_scoring_then_rerun(tmp_path, corpus, bundle, flags, find,
                                     root=None):
  path, ids, bad = _write_input(tmp_path, corpus, copies=1)
  outdir = str(tmp_path / 'out')
  proc = _start(path, bundle, outdir, flags)
  workers = _kill_a_worker(proc, root or proc.pid, find,
                           lambda: _scoring(outdir))
  rc, _, err = _finish(proc)
  assert not [pid for pid in workers if procs.alive(pid)]  # none left running
  if rc == 0:  # The job may complete without the worker: then in full.
    _assert_complete(outdir, ids, bad)
  else:
    _assert_failed_cleanly(rc, err, outdir)
  rc, _, err = _finish(_start(path, bundle, outdir, flags))
  assert rc == 0, err[-3000:]
  _assert_complete(outdir, ids, bad)


def test_direct_worker_killed_while_scoring(tmp_path, corpus, trained_bundle):
  """With warm workers (the default); Beam's own worker processes die the
  same way before their first bundle, below."""
  _killed_while_scoring_then_rerun(tmp_path, corpus, trained_bundle.path,
                                   MULTI_PROCESS, _direct_workers('warm'))


def test_warm_workers_client_killed_while_scoring(tmp_path, corpus,
                                                  trained_bundle):
  """The process Beam waits on is the client: its warm worker goes too."""
  _killed_while_scoring_then_rerun(tmp_path, corpus, trained_bundle.path,
                                   MULTI_PROCESS,
                                   _direct_workers('warm', WARM_CLIENT))


@pytest.mark.parametrize('start', sorted(STARTS))
def test_direct_worker_killed_before_its_first_bundle(tmp_path, corpus,
                                                      trained_bundle, start):
  """Beam alone waits forever here: the worker's data channel never opens.

  A warm worker killed before a client reached it is replaced: that client
  starts Beam's own worker, and the job completes.
  """
  path, ids, bad = _write_input(tmp_path, corpus[:20], copies=1)
  outdir = str(tmp_path / 'out')
  proc = _start(path, trained_bundle.path, outdir,
                MULTI_PROCESS + STARTS[start])
  workers = _kill_a_worker(proc, proc.pid, _direct_workers(start),
                           lambda: True)
  rc, _, err = _finish(proc)
  assert not [pid for pid in workers if procs.alive(pid)]  # none left running
  if start == 'warm' and rc == 0:
    _assert_complete(outdir, ids, bad)
    return
  _assert_failed_cleanly(rc, err, outdir)
  assert 'exited with return code' in [
      l for l in err.splitlines() if l.startswith('error: ')][-1]


@pytest.fixture(scope='module')
def pool_services(tmp_path_factory):
  """A local job service and a worker pool whose pid the test knows."""
  logs = tmp_path_factory.mktemp('death-services')
  job_port, pool_port = services.free_port(), services.free_port()
  with services.job_service(logs, job_port), services.worker_pool(
      logs, pool_port) as pool:
    yield ['--runner', 'PortableRunner', '--job_endpoint',
           f'localhost:{job_port}', '--environment_type', 'EXTERNAL',
           '--environment_config', f'localhost:{pool_port}'], pool.pid


def test_portable_worker_killed_while_scoring(tmp_path, corpus, trained_bundle,
                                              pool_services):
  flags, pool = pool_services
  _killed_while_scoring_then_rerun(
      tmp_path, corpus, trained_bundle.path, flags,
      lambda root: _python_workers(root, POOL_WORKER), root=pool)


def test_portable_worker_killed_before_its_first_bundle(tmp_path, corpus,
                                                        trained_bundle,
                                                        pool_services):
  """Beam's job service waits forever here; --job_timeout_secs bounds it."""
  flags, pool = pool_services
  path, _, _ = _write_input(tmp_path, corpus[:20], copies=1)
  outdir = str(tmp_path / 'out')
  proc = _start(path, trained_bundle.path, outdir,
                flags + ['--job_timeout_secs', '45'])
  _kill_a_worker(proc, pool, lambda root: _python_workers(root, POOL_WORKER),
                 lambda: True)
  rc, _, err = _finish(proc)
  ours = [l for l in err.splitlines() if l.startswith('error: ')]
  assert rc == 1 and ours, err[-3000:]
  assert ours[-1].startswith(
      'error: the job ran longer than --job_timeout_secs')
  assert not glob.glob(os.path.join(outdir, '*'))
