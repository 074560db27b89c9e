"""Quick exits: the commands' and Beam SDK workers' (in fresh processes)."""

import os
import subprocess
import sys

import pytest

from runtime import process_exit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# A module global whose __del__ runs only if the interpreter tears down.
_PRELUDE = r'''
import atexit, os, sys
from runtime import process_exit
OUT = sys.argv[1]
def mark(name, open=open, join=os.path.join, out=OUT):  # usable in teardown
  with open(join(out, name), 'w') as f:
    f.write('x')
class TornDown:
  def __del__(self):
    mark('torn-down')
witness = TornDown()
atexit.register(mark, 'atexit-ran')
sys.stdout.write('unflushed output')
'''

# Each exit is a fresh process.
pytestmark = pytest.mark.slow


def _run(tmp_path, body):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  out = subprocess.run([sys.executable, '-c', _PRELUDE + body, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
  return out, sorted(os.listdir(tmp_path))


def test_a_normal_exit_tears_down(tmp_path):
  """The control: without a quick exit the witness is torn down."""
  out, marks = _run(tmp_path, '')
  assert out.returncode == 0 and marks == ['atexit-ran', 'torn-down']


@pytest.mark.parametrize('status', [0, 3])
def test_exit_now_flushes_runs_atexit_and_skips_teardown(tmp_path, status):
  out, marks = _run(tmp_path, f'process_exit.exit_now({status})')
  assert out.returncode == status
  assert out.stdout == 'unflushed output'
  assert marks == ['atexit-ran']


@pytest.mark.parametrize('main,status', [
    ('lambda: 4', 4),
    ('lambda: sys.exit(2)', 2),
    ('lambda: sys.exit("usage: bad")', 1),
])
def test_run_command_exits_with_the_commands_status(tmp_path, main, status):
  out, marks = _run(tmp_path, f'process_exit.run_command({main})')
  assert out.returncode == status and marks == ['atexit-ran']


def test_a_worker_that_finished_skips_teardown(tmp_path):
  body = ('assert process_exit.exit_quickly_when_done(force=True)\n'
          'assert process_exit.exit_quickly_when_done(force=True)\n')
  out, marks = _run(tmp_path, body)
  assert out.returncode == 0, out.stderr
  assert out.stdout == 'unflushed output' and marks == ['atexit-ran']


def test_a_worker_that_fails_keeps_its_status_and_traceback(tmp_path):
  body = ('process_exit.exit_quickly_when_done(force=True)\n'
          'raise RuntimeError("the harness failed")\n')
  out, marks = _run(tmp_path, body)
  assert out.returncode == 1
  assert 'RuntimeError: the harness failed' in out.stderr
  assert 'atexit-ran' in marks


def test_only_beam_sdk_workers_install_it():
  assert not process_exit.is_sdk_worker()  # pytest's process
  assert process_exit.exit_quickly_when_done() is False


def test_only_local_workers_install_it(monkeypatch):
  """A Dataflow, Flink or Spark worker has no local mark: never installed."""
  monkeypatch.setattr(process_exit, 'is_sdk_worker', lambda: True)
  monkeypatch.delenv(process_exit.LOCAL_WORKER_ENV, raising=False)
  assert not process_exit.is_local_worker()
  with process_exit.local_workers_marked():
    assert os.environ[process_exit.LOCAL_WORKER_ENV] == '1'
    assert process_exit.is_local_worker()
  assert process_exit.LOCAL_WORKER_ENV not in os.environ
  assert not process_exit.is_local_worker()
