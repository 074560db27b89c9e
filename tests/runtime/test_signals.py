"""`runtime.signals` and `runtime.temp_dir` in this process: the first stop
signal raises once, a held block finishes first, later signals are ignored.
(Whole commands stopped by signals: ``tests/pipeline/cli/test_signals.py``.)
"""

import contextlib
import gc
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

import pytest

from runtime import signals, temp_dir


@pytest.fixture
def installed(monkeypatch):
  """The handlers installed, then pytest's back; the deadline never fires."""
  saved = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
  saved_hook = threading.excepthook
  saved_unraisable = sys.unraisablehook
  monkeypatch.setattr(signals, '_state', signals._State())  # pylint: disable=protected-access
  monkeypatch.setattr(signals, 'STOP_DEADLINE_SECS', 3600.0)
  monkeypatch.setattr(signals, '_previous_unraisablehook', [None])
  signals.install()
  yield signals._state  # pylint: disable=protected-access
  signals.handled()  # No more deliveries.
  if signals._state.deadline is not None:  # pylint: disable=protected-access
    signals._state.deadline.cancel()  # pylint: disable=protected-access
  for s, handler in saved.items():
    signal.signal(s, handler)
  threading.excepthook = saved_hook
  sys.unraisablehook = saved_unraisable


@pytest.mark.parametrize('signum,status', [
    (signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_stop_signal_raises_interrupted_once(installed, signum, status):
  with pytest.raises(signals.Interrupted) as raised:
    signal.raise_signal(signum)
    time.sleep(1)  # The handler runs at the next instruction.
  signals.handled()
  assert raised.value.exit_status == status
  assert raised.value.name == signal.Signals(signum).name
  assert signals.received() == signum
  signal.raise_signal(signal.SIGTERM)  # A second one: ignored.
  time.sleep(0.05)


class _SignalledOnDeletion:
  def __del__(self):
    signal.raise_signal(signal.SIGTERM)


def _signal_in_del():
  _SignalledOnDeletion()


def _signal_in_weakref_callback():
  # As an import's module lock does: a callback when its object goes.
  class Object:
    pass
  target = Object()
  ref = weakref.ref(target, lambda _: signal.raise_signal(signal.SIGTERM))
  del target
  return ref


def _signal_in_gc_callback():
  def callback(phase, info):  # pylint: disable=unused-argument
    if phase == 'start':
      gc.callbacks.remove(callback)
      signal.raise_signal(signal.SIGTERM)
  gc.callbacks.append(callback)
  gc.collect()


@pytest.mark.parametrize('swallowing', [
    _signal_in_del, _signal_in_weakref_callback, _signal_in_gc_callback])
def test_a_signal_where_python_swallows_exceptions_is_raised_again(
    installed, capfd, swallowing):
  """Raised inside a ``__del__``, a weakref callback or a gc callback,
  `Interrupted` is lost; it must reach the main code all the same."""
  reached = []
  with pytest.raises(signals.Interrupted) as raised:
    # Raised again as soon as the main thread is out of the hook: maybe
    # still within ``swallowing``, surely before the loop ends.
    swallowing()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
      time.sleep(0.01)
    reached.append('the end')
  signals.handled()
  assert raised.value.signum == signal.SIGTERM
  assert reached == []
  assert 'Exception ignored' not in capfd.readouterr().err


def _swallow_with_a_bare_except():
  try:
    signal.raise_signal(signal.SIGTERM)
    time.sleep(1)
  except:  # pylint: disable=bare-except  # As some libraries do.
    pass


def _swallow_with_suppress():
  with contextlib.suppress(BaseException):
    signal.raise_signal(signal.SIGTERM)
    time.sleep(1)


def _swallow_while_redirected():
  # A stop inside a block that captures stderr, then caught too broadly.
  try:
    with contextlib.redirect_stderr(io.StringIO()):
      signal.raise_signal(signal.SIGTERM)
      time.sleep(1)
  except BaseException:  # pylint: disable=broad-except
    pass


@pytest.mark.parametrize('swallowing', [
    _swallow_with_a_bare_except, _swallow_with_suppress,
    _swallow_while_redirected])
def test_a_stop_caught_and_dropped_by_other_code_is_raised_again(
    installed, swallowing):
  """Code that catches every exception (a bare ``except:``, C code that
  clears errors) can swallow `Interrupted`: the stop is delivered again
  until the command handles it, so the run cannot go on to the end."""
  reached = []
  started = time.monotonic()
  with pytest.raises(signals.Interrupted) as raised:
    swallowing()
    reached.append('swallowed')
    while time.monotonic() - started < 5:
      time.sleep(0.01)
    reached.append('the end')
  signals.handled()
  assert raised.value.signum == signal.SIGTERM
  assert reached == ['swallowed']
  assert time.monotonic() - started < 1 + 10 * signals.REDELIVER_SECS


def test_a_stop_on_its_way_or_handled_is_not_raised_again(installed):
  """Deliveries again never cut the command's cleanup short: not in the
  ``finally`` blocks the stop passes, nor where the command catches it, nor
  once it said it `handled` it."""
  steps = []
  try:
    try:
      signal.raise_signal(signal.SIGHUP)
      time.sleep(1)
    finally:
      time.sleep(5 * signals.REDELIVER_SECS)
      steps.append('cleaned up')
  except signals.Interrupted:
    time.sleep(5 * signals.REDELIVER_SECS)
    steps.append('caught')
    signals.handled()
  time.sleep(5 * signals.REDELIVER_SECS)
  steps.append('ended')
  assert steps == ['cleaned up', 'caught', 'ended']


def test_other_lost_exceptions_are_still_reported(installed):
  seen = []
  signals._previous_unraisablehook[0] = seen.append  # pylint: disable=protected-access
  class Failing:
    def __del__(self):
      raise ValueError('in __del__')
  Failing()
  assert [type(u.exc_value) for u in seen] == [ValueError]


def test_a_held_block_finishes_before_the_signal_is_raised(installed):
  steps = []
  with pytest.raises(signals.Interrupted):
    with signals.held():
      signal.raise_signal(signal.SIGTERM)
      time.sleep(0.05)
      steps.append('finished')
  signals.handled()
  assert steps == ['finished']


def test_an_error_of_a_held_block_goes_on_as_it_is(installed):
  with pytest.raises(OSError):
    with signals.held():
      signal.raise_signal(signal.SIGHUP)
      raise OSError('disk full')
  assert signals.received() == signal.SIGHUP


def test_callbacks_run_when_stopping(installed):
  called = []
  with signals.when_stopping(lambda: called.append(1)):
    with pytest.raises(signals.Interrupted):
      signal.raise_signal(signal.SIGINT)
      time.sleep(1)
  signals.handled()
  assert called == [1]


def test_another_thread_is_stopped():
  stopped = []

  def busy():
    try:
      while True:
        time.sleep(0.01)
    except signals.ThreadStopped:
      stopped.append(True)
      raise

  thread = threading.Thread(target=busy, daemon=True)
  thread.start()
  saved_hook = threading.excepthook
  threading.excepthook = lambda args: None
  try:
    signals.raise_in_thread(thread)
    thread.join(5.0)
  finally:
    threading.excepthook = saved_hook
  assert stopped == [True] and not thread.is_alive()


def test_the_run_temp_dir_holds_temp_files_and_goes(monkeypatch, tmp_path):
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  monkeypatch.setattr(tempfile, 'tempdir', None)
  with temp_dir.run_temp_dir() as root:
    assert os.environ['TMPDIR'] == root == tempfile.gettempdir()
    assert os.path.dirname(root) == str(tmp_path)
    made = tempfile.mkdtemp()
    assert made.startswith(root + os.sep)
  assert not os.path.exists(root)
  assert os.environ['TMPDIR'] == str(tmp_path)


def test_a_child_started_ignoring_survives_a_signal_at_once_and_the_mask_comes_back():
  """`signals.start_ignoring`: the child ignores the signal from before its
  first instruction (blocked through the fork), and this thread's signal
  mask is as it was."""
  before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
  child = signals.start_ignoring(
      [sys.executable, '-c', 'import sys, time; time.sleep(1.5); '
       'print("alive"); sys.stdout.flush()'], ignored=('INT',),
      stdout=subprocess.PIPE, text=True)
  child.send_signal(signal.SIGINT)  # At once, before any trap.
  out, _ = child.communicate(timeout=30)
  assert (child.returncode, out.strip()) == (0, 'alive')
  assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
