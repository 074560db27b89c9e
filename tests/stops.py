"""A scoring run stopped by a signal, and the checks every such stop must pass.

Shared by the signal tests and the stress test. A run is a real
``python -m pipeline.score`` in a session of its own (so that a signal can
go to its whole process group, as Ctrl-C and a closed terminal send it),
with ``TMPDIR`` pointing to a folder of the test's: everything the run makes
there, and every process it starts (they inherit ``TMPDIR``), is the run's.
Its output folder holds an earlier complete output, which must be there
byte for byte after the stop, unless the run finished first.
"""

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

import psutil

from tests import services
from tests.commands import ROOT

# The bound: the job stops within this many seconds of the signal.
STOP_SECS = 10.0
# A run that never reaches the moment it waits for fails after this long.
MOMENT_TIMEOUT = 180.0
EARLIER = {
    'scores-00000-of-00001.jsonl': b'{"id": "earlier", "scores": [0.5]}\n',
    '_errors-00000-of-00001.jsonl': b'',
    '_SUMMARY.json': b'{"earlier": true}\n',
}


def write_input(path: str, corpus, copies: int) -> int:
  """``copies`` times the corpus under new ids; returns the documents."""
  with open(path, 'w', encoding='utf-8') as f:
    for i in range(copies):
      for doc in corpus:
        f.write(json.dumps({'id': f'{doc["id"]}-{i}', 'text': doc['text']},
                           ensure_ascii=False) + '\n')
  return copies * len(corpus)


def _has(pattern: str) -> bool:
  return bool(glob.glob(pattern))


# The moments a signal is sent at: each a condition on the output folder.
def _starting(outdir: str, started: float) -> bool:
  del outdir
  return time.monotonic() - started > 0.3


def _running(outdir: str, started: float) -> bool:
  del started
  return os.path.isdir(os.path.join(outdir, '_previous'))


def _writing(outdir: str, started: float) -> bool:
  del started
  return _has(os.path.join(outdir, 'beam-temp-*', '*'))


def _moving(outdir: str, started: float) -> bool:
  del started
  return (_running(outdir, 0) and
          _has(os.path.join(outdir, 'scores-*-of-*')))


MOMENTS: dict[str, Callable[[str, float], bool]] = {
    'starting': _starting,   # importing, checking, starting workers
    'running': _running,     # the earlier output is set aside, job started
    'writing': _writing,     # workers write temporary shards
    'moving': _moving,       # final shards are being moved into place
}


def digest(outdir: str) -> dict[str, str]:
  """Every file under ``outdir`` by relative path, with its SHA-256."""
  found = {}
  for folder, _, files in os.walk(outdir):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        found[os.path.relpath(path, outdir)] = hashlib.sha256(
            f.read()).hexdigest()
  return found


class StoppedRun:
  """What a stopped run left: its status, stderr, the time it took to stop."""
  def __init__(self, returncode, stderr, stop_secs, signum, tmp, outdir,
               sent):
    self.returncode = returncode
    self.stderr = stderr
    self.stop_secs = stop_secs
    self.signum = signum
    self.tmp = tmp
    self.outdir = outdir
    self.sent = sent  # Whether the signal was sent before the run ended.


def stop_run(workdir: str, *, input_path: str, bundle: str, flags: list[str],
             signum: int, moment: str, group: bool,
             delay: float = 0.0) -> StoppedRun:
  """Starts a scoring run into ``workdir/out`` (holding `EARLIER`), sends
  ``signum`` once ``moment`` is reached (plus ``delay`` seconds), and waits
  for the run to end."""
  outdir = os.path.join(workdir, 'out')
  tmp = os.path.join(workdir, 'tmp')
  os.makedirs(outdir)
  os.makedirs(tmp)
  for name, data in EARLIER.items():
    with open(os.path.join(outdir, name), 'wb') as f:
      f.write(data)
  env = dict(services.env(), TMPDIR=tmp)
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'pipeline.score', '--input', input_path,
       '--model', bundle, '--output', outdir, '--batch_tokens', '300'] + flags,
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      start_new_session=True)
  started = time.monotonic()
  reached = MOMENTS[moment]
  while proc.poll() is None and not reached(outdir, started):
    if time.monotonic() - started > MOMENT_TIMEOUT:
      os.killpg(proc.pid, signal.SIGKILL)
      raise AssertionError(f'the run never reached {moment!r}: '
                           f'{proc.communicate()[1][-3000:]!r}')
    time.sleep(0.005)
  if delay:
    time.sleep(delay)
  sent = proc.poll() is None
  sent_at = time.monotonic()
  if sent:
    try:
      if group:
        os.killpg(proc.pid, signum)
      else:
        os.kill(proc.pid, signum)
    except ProcessLookupError:
      sent = False
  try:
    _, err = proc.communicate(timeout=60)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
  return StoppedRun(proc.returncode, err.decode('utf-8', 'replace'),
                    time.monotonic() - sent_at, signum, tmp, outdir, sent)


def _left_processes(tmp: str, wait_secs: float = 3.0) -> list[str]:
  """Processes (not zombies) whose ``TMPDIR`` is under ``tmp``: the run's."""
  deadline = time.monotonic() + wait_secs
  while True:
    left = []
    for p in psutil.process_iter(['pid', 'status']):
      try:
        if p.info['status'] == psutil.STATUS_ZOMBIE:
          continue
        if p.environ().get('TMPDIR', '').startswith(tmp):
          left.append(f'{p.pid}: {" ".join(p.cmdline())[:200]}')
      except (psutil.Error, OSError):
        continue
    if not left or time.monotonic() > deadline:
      return left
    time.sleep(0.2)


def check_stopped(run: StoppedRun, documents: int,
                  earlier: Optional[dict[str, str]] = None) -> str:
  """Checks every promise of a stop; returns which end the run came to:
  ``'earlier'`` (the earlier output is back) or ``'finished'`` (the run
  completed before it stopped).

  Args:
    run: the stopped run.
    documents: the documents in its input.
    earlier: the digest of the earlier output (default: `EARLIER`'s).
  """
  lines = [line for line in run.stderr.splitlines() if line.strip()]
  context = '\n'.join(lines[-30:])
  status = 128 + run.signum
  name = signal.Signals(run.signum).name
  assert 'Traceback' not in run.stderr, ('a traceback', context)
  assert not [line for line in lines if line.lower().startswith(
      ('error', 'warning', 'exception'))], ('an error line', context)
  assert run.stop_secs < STOP_SECS, (run.stop_secs, context)
  if run.returncode == 0:  # It finished before the signal was handled.
    assert lines and lines[-1].startswith('Outputs: '), context
  else:
    assert run.returncode == status, (run.returncode, context)
    assert lines and lines[-1].startswith(f'interrupted by {name}'), context
    assert sum(line.startswith('interrupted by') for line in lines) == 1, (
        'one line', run.stop_secs, context)
  left = _left_processes(run.tmp)
  assert left == [], (f'processes left: {left}', context)
  assert os.listdir(run.tmp) == [], (f'temp files left: '
                                     f'{os.listdir(run.tmp)}', context)
  files = digest(run.outdir)
  if earlier is None:
    earlier = {name: hashlib.sha256(data).hexdigest()
               for name, data in EARLIER.items()}
  if files == earlier:
    assert ('the earlier output in' in lines[-1] and 'is kept' in lines[-1]
            or 'nothing was changed' in lines[-1]), context
    return 'earlier'
  # Otherwise the new output is complete: every document scored.
  assert run.returncode == 0 or 'after the run finished' in lines[-1], context
  assert not [p for p in files if p.startswith(('_previous', 'beam-temp'))], (
      files, context)
  with open(os.path.join(run.outdir, '_SUMMARY.json'), encoding='utf-8') as f:
    summary = json.load(f)
  assert summary['counts']['scored'] == documents, summary['counts']
  return 'finished'
