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
* `Interrupted` can be lost where it is raised: Python swallows it in a
  ``__del__``, a weakref callback (an import's module lock has one) or a
  garbage-collector callback (printing "Exception ignored in ..."), C code
  that clears errors swallows it silently, and so does a library's bare
  ``except:``. The command would then run on, or finish, as if no signal had
  come. So the stop is delivered again, every `REDELIVER_SECS`, until the
  command says it has `handled` it; a delivery is skipped while an
  `Interrupted` is being handled (a ``finally`` or ``except`` block on its
  way: the cleanup must not be cut short) and inside a `held` block.
  ``sys.unraisablehook`` keeps Python's "Exception ignored" message of a
  lost `Interrupted` off the console.
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
# Until the command has handled the stop, it is delivered again this often.
REDELIVER_SECS = 0.1


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
    # The command caught `Interrupted` and is stopping (`handled`).
    self.handled = False
    # The next call of the handler is a delivery again, not a new signal.
    self.redelivering = False
    self.deliverer: Optional[threading.Thread] = None


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
  if sys.unraisablehook is not _quiet_if_lost:
    _previous_unraisablehook[0] = sys.unraisablehook
    sys.unraisablehook = _quiet_if_lost
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


def handled() -> None:
  """Says that the command caught `Interrupted` and is stopping: the stop
  is not delivered again. Call it first thing where the command catches
  it."""
  _state.handled = True


def _handle(signum: int, frame) -> None:
  if _state.redelivering:
    _state.redelivering = False
    if _was_lost(frame):
      _LOGGER.debug('The stop was lost where it was raised: raised again')
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
  if _state.deliverer is None:
    _state.deliverer = threading.Thread(
        target=_deliver_until_handled, args=(_state,),
        name='redeliver-stop-signal', daemon=True)
    _state.deliverer.start()
  raise Interrupted(_state.received)


def _deliver_until_handled(state: _State) -> None:
  """Delivers the stop again every `REDELIVER_SECS`, through the main
  thread's handler, until the command has `handled` it."""
  while True:
    time.sleep(REDELIVER_SECS)
    if state.handled or state is not _state:
      return
    state.redelivering = True
    _thread.interrupt_main(state.received)


def _was_lost(frame) -> bool:
  """In the handler, for a delivery again: whether the `Interrupted`
  raised before was lost, rather than on its way to the command."""
  if _state.handled or _state.held or _inside_the_hook(frame):
    return False
  # On its way, it is the exception being handled (``finally``, ``except``
  # and ``__exit__`` blocks), or the context of one raised there.
  error, seen = sys.exc_info()[1], set()
  while error is not None and id(error) not in seen:
    if isinstance(error, Interrupted):
      return False
    seen.add(id(error))
    error = error.__context__
  return True


_previous_unraisablehook: list = [sys.unraisablehook]


def _quiet_if_lost(unraisable) -> None:
  """``sys.unraisablehook``: an `Interrupted` Python could not raise is
  noted at DEBUG (the stop is delivered again, `_deliver_until_handled`);
  anything else goes to the hook that was there before."""
  if not isinstance(unraisable.exc_value, Interrupted):
    _previous_unraisablehook[0](unraisable)
    return
  _LOGGER.debug('%s landed where Python swallows exceptions (%r); it is '
                'delivered again', unraisable.exc_value, unraisable.object)


def _inside_the_hook(frame) -> bool:
  # Raised there, it would be lost again.
  while frame is not None:
    if frame.f_code is _quiet_if_lost.__code__:
      return True
    frame = frame.f_back
  return False


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
