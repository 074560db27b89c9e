"""Turns the signals that stop a command into one exception, raised once.

Why this module exists: ``timeout``, Airflow, Kubernetes and systemd stop a
process with SIGTERM, a closed terminal sends SIGHUP and Ctrl-C sends SIGINT.
Python's defaults end the process at once on the first two, so a run could
leave its earlier output set aside, and turn the third into tracebacks from
every thread that meets the stopped job. Here all three take one route:

* `install` (in a command's main thread, before anything else) makes the
  first stop signal raise `Interrupted` in the main thread, wherever it is.
  The command's ``finally`` blocks then stop the job and put its output
  folder back; its main function says what happened in one line and exits
  with `Interrupted.exit_status` (128 + the signal's number).
* A signal that arrives inside `held` (moving the output's files) waits
  until the block has ended, so that a folder is never left half moved.
* Signals after the first are noted and ignored: the command is already
  stopping. Errors in other threads are logged at DEBUG from then on, as
  they are consequences of the stop. And if stopping takes longer than
  `STOP_DEADLINE_SECS`, the process's children are killed and it exits.
* Python swallows an exception raised where nothing can catch it: in a
  ``__del__``, a weakref callback (an import's module lock has one), a
  garbage-collector callback. If the signal lands there, `Interrupted` would
  be printed as "Exception ignored in ..." and lost, and the command would
  run on until the deadline. `install` hooks ``sys.unraisablehook`` so that
  such a lost `Interrupted` is delivered again, once the main thread is back
  in ordinary code.
"""

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import _thread
from typing import Callable, Iterator, Optional, Sequence

_LOGGER = logging.getLogger(__name__)

# The signals that ask a command to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# After the first stop signal, the process exits by then whatever happens.
STOP_DEADLINE_SECS = 8.0


class Interrupted(BaseException):
  """A stop signal arrived (a BaseException, as KeyboardInterrupt is).

  Args:
    signum: the signal's number.
  """
  def __init__(self, signum: int):
    self.signum = signum
    self.name = signal.Signals(signum).name
    super().__init__(f'interrupted by {self.name}')

  @property
  def exit_status(self) -> int:
    """The shell's convention for a process a signal stopped."""
    return 128 + self.signum


class _State:
  def __init__(self):
    self.received: Optional[int] = None
    self.raised = False
    self.held = 0
    self.on_stop: list[Callable[[], None]] = []
    self.deadline: Optional[threading.Timer] = None
    self.spared: set[int] = set()
    # An `Interrupted` was swallowed and waits to be raised again.
    self.redeliver = False


_state = _State()


def received() -> Optional[int]:
  """The first stop signal this process received, or None."""
  return _state.received


def install() -> None:
  """Makes the first stop signal raise `Interrupted` in the main thread.

  Call it from the main thread, as the command starts.
  """
  for signum in STOP_SIGNALS:
    signal.signal(signum, _handle)
  if sys.unraisablehook is not _redeliver_if_lost:
    _previous_unraisablehook[0] = sys.unraisablehook
    sys.unraisablehook = _redeliver_if_lost
  # Registered first, so run last: a stopped run's threads may have started
  # a process after the command stopped those it knew of.
  atexit.register(_stop_children_if_stopped)


def _stop_children_if_stopped() -> None:
  if _state.received is not None:
    stop_children(wait_secs=1.0)


@contextlib.contextmanager
def when_stopping(callback: Callable[[], None]) -> Iterator[None]:
  """Calls ``callback`` (in the main thread) if the first stop signal
  arrives within the block, before `Interrupted` is raised: to quieten
  loggers, say."""
  _state.on_stop.append(callback)
  try:
    yield
  finally:
    _state.on_stop.remove(callback)


def _handle(signum: int, frame) -> None:
  if _state.redeliver and not _inside_the_hook(frame):
    _state.redeliver = False
    if not _state.held and not _state.raised:
      _raise()
    return
  if _state.received is not None:
    _LOGGER.debug('%s while stopping: ignored', signal.Signals(signum).name)
    return
  _state.received = signum
  threading.excepthook = _quiet_thread_error
  for callback in _state.on_stop:
    try:
      callback()
    except Exception:  # pylint: disable=broad-except
      _LOGGER.debug('A stop callback failed', exc_info=True)
  _state.deadline = threading.Timer(STOP_DEADLINE_SECS, _stop_now,
                                    args=(signum,))
  _state.deadline.daemon = True
  _state.deadline.start()
  if not _state.held:
    _raise()


def _raise() -> None:
  _state.raised = True
  raise Interrupted(_state.received)


_previous_unraisablehook: list = [sys.unraisablehook]


def _redeliver_if_lost(unraisable) -> None:
  """``sys.unraisablehook``: an `Interrupted` Python could not raise is
  raised again at the main thread's next ordinary instruction; anything
  else goes to the hook that was there before."""
  if not isinstance(unraisable.exc_value, Interrupted):
    _previous_unraisablehook[0](unraisable)
    return
  _LOGGER.debug('%s landed where Python swallows exceptions (%r): raised '
                'again', unraisable.exc_value, unraisable.object)
  _state.raised = False
  _state.redeliver = True
  # From another thread: a signal simulated from here would run its handler
  # inside this hook, where the exception would be lost again.
  threading.Thread(target=_interrupt_main_until_raised,
                   args=(unraisable.exc_value.signum,),
                   name='redeliver-stop-signal', daemon=True).start()


def _inside_the_hook(frame) -> bool:
  while frame is not None:
    if frame.f_code is _redeliver_if_lost.__code__:
      return True
    frame = frame.f_back
  return False


def _interrupt_main_until_raised(signum: int) -> None:
  while _state.redeliver:
    _thread.interrupt_main(signum)
    time.sleep(0.05)


@contextlib.contextmanager
def held() -> Iterator[None]:
  """A block a stop signal does not interrupt: it is raised at its end.

  Use it for file moves that must finish once begun. An exception the block
  raises itself goes on as it is (the signal stays in `received`).
  """
  _state.held += 1
  try:
    yield
  finally:
    _state.held -= 1
  if not _state.held and _state.received is not None and not _state.raised:
    _raise()


def _quiet_thread_error(args) -> None:
  """Once stopping, another thread's error is a consequence of the stop."""
  _LOGGER.debug('Thread %s ended with %r while stopping',
                getattr(args.thread, 'name', '?'), args.exc_value)


def ignoring_at_start(argv: Sequence[str],
                      ignored: Sequence[str] = ('INT', 'TERM', 'HUP')
                      ) -> list[str]:
  """``argv`` started with the ``ignored`` signals ignored from its first
  instruction (``trap '' ...; exec``): an ignored disposition survives
  ``exec``, and Python then installs no KeyboardInterrupt handler. A helper
  process of the command (its stderr filter, its warm workers) is so never
  ended by a signal sent to the process group while it starts, before it
  could ignore the signal itself."""
  return ['/bin/sh', '-c', f'trap "" {" ".join(ignored)}; exec "$0" "$@"',
          *argv]


def start_ignoring(argv: Sequence[str],
                   ignored: Sequence[str] = ('INT', 'TERM', 'HUP'),
                   **popen_args) -> subprocess.Popen:
  """Starts `ignoring_at_start` ``argv`` with the ``ignored`` signals also
  blocked in this thread while it forks: the child inherits the block
  through ``exec``, so a signal sent to the process group in the instant
  before its shell's ``trap`` runs cannot end it. They stay blocked in it
  (it ignores them anyway); here the block is lifted as soon as the child
  is started, and a signal that came meanwhile is delivered then."""
  numbers = {getattr(signal, f'SIG{name}') for name in ignored}
  previous = signal.pthread_sigmask(signal.SIG_BLOCK, numbers)
  try:
    return subprocess.Popen(ignoring_at_start(argv, ignored), **popen_args)
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def spare(pid: int) -> None:
  """Keeps a child process out of `stop_children` (the console's stderr
  filter, which must print the last line)."""
  _state.spared.add(pid)


def stop_children(wait_secs: float = 3.0) -> int:
  """Stops every process below this one but the spared: SIGTERM, then
  SIGKILL for those still there after ``wait_secs``.

  Returns:
    How many there were.
  """
  import psutil  # pylint: disable=import-outside-toplevel
  try:
    children = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in _state.spared]
  except psutil.Error:
    return 0
  stop_processes(children, wait_secs)
  return len(children)


def stop_processes(processes: list, wait_secs: float = 5.0) -> None:
  """Terminates ``processes`` (psutil), then kills those still there after
  ``wait_secs``, and waits for them to be gone."""
  import psutil  # pylint: disable=import-outside-toplevel
  for process in processes:
    with contextlib.suppress(psutil.Error):
      process.terminate()
  _, alive = psutil.wait_procs(processes, timeout=wait_secs)
  for process in alive:
    with contextlib.suppress(psutil.Error):
      process.kill()
  psutil.wait_procs(alive, timeout=wait_secs)


def _stop_now(signum: int) -> None:
  """The deadline passed: kills this process's children and exits."""
  name = signal.Signals(signum).name
  try:
    stop_children(wait_secs=0.5)
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    # Straight to file descriptor 2: ``sys.stderr`` may be silenced by now.
    os.write(2, f'interrupted by {name}; stopping took longer than '
                f'{STOP_DEADLINE_SECS:g} s, so the process was ended; rerun '
                f'the same command to recover and finish.\n'.encode())
  finally:
    os._exit(128 + signum)  # pylint: disable=protected-access


class ThreadStopped(BaseException):
  """Raised in a thread that `raise_in_thread` stops."""


def raise_in_thread(thread: threading.Thread,
                    exception: type = ThreadStopped) -> None:
  """Raises ``exception`` in another thread of this process.

  CPython's ``PyThreadState_SetAsyncExc`` (a documented C API) delivers it at
  the thread's next Python instruction; a thread inside a long C call (a
  TensorFlow batch, a gRPC wait) meets it when the call returns.
  """
  import ctypes  # pylint: disable=import-outside-toplevel
  if thread.ident is not None and thread.is_alive():
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exception))
