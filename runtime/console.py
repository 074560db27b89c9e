"""The quiet console of the project's commands.

Why this module exists: TensorFlow and Beam print start-up notices on every
run (TensorFlow's C++ block, ``failed call to cuInit``, oneDNN, Beam's
``apitools not found``...), and Beam configures the root logger when it is
imported. The commands (``pipeline.score``, ``pipeline.train``,
``pipeline.import_keras``) share this set-up so that a run prints only the
command's own lines unless ``--log_level`` asks for more.

Importing this module (the commands do, before Beam) drops two of Beam's
notices that are logged on the root logger while Beam is imported or
running, and mean nothing for this project: ``apitools not found`` and
``Resource module is not available``. Nothing else is filtered on import.
"""

import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
from typing import Iterator, Optional, Sequence

from runtime import internals, signals
from runtime.argv import flag_value

PROJECT_LOGGERS = ('model', 'transforms', 'pipeline', 'runtime')
# TensorFlow's C++ log level, read when TensorFlow starts.
TF_LOG_ENV = 'TF_CPP_MIN_LOG_LEVEL'
LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR')
DEFAULT_LOG_LEVEL = 'ERROR'

# Notices Beam logs on the root logger, on import and per RunInference call.
_BEAM_NOTICES = ('apitools not found', 'Resource module is not available')

# Lines the stderr filter drops at the default log level. Everything else,
# errors included, goes through unchanged. Levels quiet what they can first:
# ``TF_CPP_MIN_LOG_LEVEL`` (TensorFlow's C++ notices, oneDNN's, the CPU
# instructions one), and Beam's ``--default_sdk_harness_log_level`` for
# local worker processes (their harness's INFO lines). What no level
# reaches is named here.
_NOISE = (
    # absl's notice before the first C++ log line of gRPC or TensorFlow.
    r'^WARNING: All log messages before absl::InitializeLog\(\) is called',
    # C++ INFO and WARNING lines (absl format) logged before TensorFlow reads
    # its log level: cudart_stub.cc's "Could not find cuda drivers".
    r'^[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\]',
    # An ERROR line TensorFlow prints on every machine without a GPU driver.
    r'failed call to cuInit',
    # ...and one oneDNN prints on every CPU without an instruction set that
    # some data type's kernels need ("oneDNN supports DT_BOOL only on
    # platforms with AVX-512"): TensorFlow falls back to its own kernels.
    r'oneDNN supports \S+ only on platforms with',
    # Python log lines below ERROR in logging's default format, printed by
    # Beam's SDK worker subprocesses before their harness sets its level
    # ("Logging handler created.", Beam's "apitools not found" on import).
    r'^(DEBUG|INFO|WARNING):[\w.]+:',
)
# A log record in Python logging's default format (``LEVEL:logger:message``),
# which only Beam's SDK worker subprocesses print here, starts a block that
# the filter drops with its traceback: a worker's failure fails the job, and
# the command reports it in its own error line (--log_level shows it all).
_WORKER_RECORD = r'^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:'
# Lines that continue such a block: blank or indented lines, a traceback's
# headers, and its closing ``package.module.SomeError: message`` line.
_TRACEBACK_LINE = (
    r'^(\s|Traceback \(most recent call last\)|During handling of the above '
    r'exception|The above exception was the direct cause|'
    r'([A-Za-z_]\w*\.)+[A-Z]\w*(:|\s*$)|[A-Z]\w*(Error|Exception)(:|\s*$))')

# The stderr filter: a child process, so that a crash of the command (a C++
# abort, a kill) still gets its last lines through.
_FILTER_PROGRAM = r'''
import re, signal, sys
# It ends when the last writer closes the pipe; the command handles stop
# signals (`runtime.signals`) and its last line must still come through.
for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
  signal.signal(stop, signal.SIG_IGN)
drop, record, inside = (re.compile(a.encode('utf-8')) for a in sys.argv[1:4])
out = sys.stdout.buffer
in_record = False
for line in sys.stdin.buffer:
  if record.search(line):
    in_record = True
  elif in_record and (inside.search(line) or drop.search(line)):
    # A traceback line, or noise another process (a worker importing
    # TensorFlow) wrote between two lines of it: the block goes on.
    continue
  else:
    in_record = False
    if not drop.search(line):
      out.write(line)
      out.flush()
'''


# The loggers of Beam's SDK harness (its bundles' errors, channel closures).
_HARNESS_LOGGERS = 'apache_beam.runners.worker.'
# Beam's DirectRunner relays each worker subprocess's log entries through this
# logger as ``Worker: <entry>``; a failing bundle arrives there as a whole
# traceback, which the command then reports in its own one-line error.
_WORKER_RELAY = ('apache_beam.runners.portability.local_job_service',
                 'Worker: %s')


class _DropWorkerRelay(logging.Filter):
  """Drops worker log entries (quiet level): those the DirectRunner relays
  from its worker processes, those of an SDK harness that runs in this
  process (the in-process DirectRunner, LOOPBACK on Flink and Spark), and
  the runner's error on closing a worker that is gone (a stop signal to the
  process group can reach the workers before this process reacts to it)."""
  def filter(self, record: logging.LogRecord) -> bool:
    return ((record.name, record.msg) != _WORKER_RELAY and
            not record.name.startswith(_HARNESS_LOGGERS) and
            not _closing_a_gone_worker(record))


def _closing_a_gone_worker(record: logging.LogRecord) -> bool:
  return (record.name == internals.WORKER_HANDLERS_LOGGER and
          isinstance(record.msg, str) and
          record.msg.startswith(internals.CLOSING_WORKER_ERROR))


def _is_own(record: logging.LogRecord) -> bool:
  """Whether ``record`` comes from this project's or the command's code."""
  return record.name.split('.')[0] in PROJECT_LOGGERS + ('__main__',)


class _OwnRecordsOnly(logging.Filter):
  """Once a run is stopping: only the command's own records. On the
  handler, not the root logger's level alone: a library that sets the root
  level again (an SDK harness starting in this process) must not bring its
  errors back, which are consequences of the stop."""
  def filter(self, record: logging.LogRecord) -> bool:
    return _is_own(record)


class _DropBeamNotices(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and
                record.msg.startswith(_BEAM_NOTICES))


def _install_notice_filter() -> None:
  root = logging.getLogger()
  if not any(isinstance(f, _DropBeamNotices) for f in root.filters):
    root.addFilter(_DropBeamNotices())


_install_notice_filter()


class _ConsoleFormatter(logging.Formatter):
  """The command's INFO lines as they are; anything else with its level."""
  def format(self, record: logging.LogRecord) -> str:
    message = super().format(record)
    own = _is_own(record)
    if own and record.levelno < logging.WARNING:
      return message
    if own:
      return f'{record.levelname.lower()}: {message}'
    return f'{record.levelname} {record.name}: {message}'


class Console:
  """The console set-up of one command run; `close()` undoes it.

  Args:
    log_level: the level of other libraries' messages (`LOG_LEVELS`). At
      ``ERROR`` (the default) their start-up notices are dropped as well, and
      so are worker subprocesses' log entries relayed by the DirectRunner (a
      worker's failure fails the job, which the command reports itself).
    command: the command's own logger (shown at INFO).
    filter_stderr: drop start-up notices written to the stderr file
      descriptor by C++ code and subprocesses (only at ``ERROR``).
  """
  def __init__(self, log_level: str = DEFAULT_LOG_LEVEL, *, command: str,
               filter_stderr: bool = True):
    level = logging.getLevelName(log_level.upper())
    quiet = level >= logging.ERROR
    # Read by TensorFlow when it starts, here and in worker subprocesses.
    os.environ.setdefault(TF_LOG_ENV, tensorflow_log_level(log_level))
    root = logging.getLogger()
    self._saved = (root.level, list(root.handlers), {
        name: logging.getLogger(name).level
        for name in PROJECT_LOGGERS + (command, '__main__')
    })
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter('%(message)s'))
    if level >= logging.ERROR:
      # A worker's failure is the command's error line; --log_level shows
      # the workers' own entries.
      handler.addFilter(_DropWorkerRelay())
    for h in list(root.handlers):
      root.removeHandler(h)
    root.addHandler(handler)
    self._handler = handler
    root.setLevel(level)
    for name in PROJECT_LOGGERS:
      logging.getLogger(name).setLevel(min(level, logging.WARNING))
    for name in (command, '__main__'):
      logging.getLogger(name).setLevel(min(level, logging.INFO))
    self._captured_warnings = quiet
    self._saved_excepthook = None
    if quiet:
      logging.captureWarnings(True)
      # Beam's gRPC threads end with tracebacks when a job stops or fails
      # (a closed channel); the command reports the job's outcome itself.
      self._saved_excepthook = threading.excepthook
      threading.excepthook = _thread_error_at_debug
    global _quiet_console, _own_stderr  # pylint: disable=global-statement
    self._was_quiet, _quiet_console = _quiet_console, quiet
    # Taken here, in the command's own flow: a stop signal can arrive while
    # some code has ``sys.stderr`` redirected for a moment.
    self._was_own = _own_stderr
    _own_stderr = _real_stderr if _real_stderr is not None else sys.stderr
    self._filter: Optional[_StderrFilter] = None
    if quiet and filter_stderr:
      self._filter = _StderrFilter.start('|'.join(f'(?:{p})' for p in _NOISE))

  def quiet_other_libraries(self) -> None:
    """At the default level, drops other libraries' log records and what
    they print to ``sys.stderr`` from now on (once a run is stopping, their
    errors are consequences of the stop). The command's own lines still
    show: its loggers', and `say`'s."""
    if self._captured_warnings:
      logging.getLogger().setLevel(logging.CRITICAL + 1)
      self._handler.addFilter(_OwnRecordsOnly())
      _discard_stderr()

  def close(self) -> None:
    global _quiet_console, _own_stderr  # pylint: disable=global-statement
    _quiet_console = self._was_quiet
    if self._filter is not None:
      self._filter.stop()
      self._filter = None
    if self._captured_warnings:
      logging.captureWarnings(False)
      self._captured_warnings = False
      _restore_stderr()
    _own_stderr = self._was_own
    if self._saved_excepthook is not None:
      if threading.excepthook is _thread_error_at_debug:
        threading.excepthook = self._saved_excepthook
      self._saved_excepthook = None
    level, handlers, levels = self._saved
    root = logging.getLogger()
    for h in list(root.handlers):
      root.removeHandler(h)
    for h in handlers:
      root.addHandler(h)
    root.setLevel(level)
    for name, value in levels.items():
      logging.getLogger(name).setLevel(value)

  def __enter__(self) -> 'Console':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class _StderrFilter:
  """Routes file descriptor 2 through a child process that drops noise."""
  def __init__(self, process: subprocess.Popen, saved_fd: int):
    self._process = process
    self._saved_fd = saved_fd

  @classmethod
  def start(cls, pattern: str, record: str = _WORKER_RECORD,
            inside: str = _TRACEBACK_LINE) -> Optional['_StderrFilter']:
    try:
      sys.stderr.flush()
      saved = os.dup(2)
    except (OSError, ValueError):
      return None
    # Whole or not at all: a stop signal waits (`runtime.signals`).
    with signals.held():
      try:
        process = signals.start_ignoring(
            [sys.executable, '-I', '-S', '-c', _FILTER_PROGRAM, pattern,
             record, inside],
            stdin=subprocess.PIPE, stdout=saved, close_fds=True)
      except OSError:
        os.close(saved)
        return None
      signals.spare(process.pid)  # It prints the command's last line.
      os.dup2(process.stdin.fileno(), 2)
      process.stdin.close()
      return cls(process, saved)

  def stop(self) -> None:
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    if signals.received() is not None:
      # A stopped run: processes its threads started late may still print
      # while it exits. The filter stays; it ends when they all have.
      return
    os.dup2(self._saved_fd, 2)
    os.close(self._saved_fd)
    try:
      # Worker subprocesses that outlive the run keep the pipe open; their
      # lines still go through once they exit.
      self._process.wait(timeout=5)
    except subprocess.TimeoutExpired:
      pass


def _thread_error_at_debug(args) -> None:
  """A thread's uncaught exception, logged at DEBUG with its traceback."""
  if args.exc_type is SystemExit:
    return
  logging.getLogger(__name__).debug(
      'Thread %s ended with an error', getattr(args.thread, 'name', '?'),
      exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


class _Discard(io.TextIOBase):
  """A text stream that drops what is written to it."""
  def write(self, text: str) -> int:
    return len(text)

  def writable(self) -> bool:
    return True


# The real ``sys.stderr`` while other writers' output is discarded.
_real_stderr = None
# The stream the open console writes the command's lines to: ``sys.stderr``
# as the console opened.
_own_stderr = None
# Whether a Console at the default (quiet) level is open.
_quiet_console = False


def _discard_stderr() -> bool:
  """Points ``sys.stderr`` at a sink; returns whether it was not already."""
  global _real_stderr  # pylint: disable=global-statement
  if _real_stderr is not None:
    return False
  # Not ``sys.stderr`` when a console is open: a stop signal may come while
  # code has it redirected for a moment (``contextlib.redirect_stderr`` to
  # capture a message), and the command's last line must not go there.
  _real_stderr = _commands_stream()
  sys.stderr = _Discard()
  return True


def _commands_stream():
  """Where the command's own lines go: the open console's stream, else
  ``sys.stderr``."""
  return _own_stderr if _own_stderr is not None else sys.stderr


def _restore_stderr() -> None:
  global _real_stderr  # pylint: disable=global-statement
  if _real_stderr is not None:
    sys.stderr, _real_stderr = _real_stderr, None


@contextlib.contextmanager
def others_silenced() -> Iterator[None]:
  """While a job runs at the default level: what other code prints to
  ``sys.stderr`` is dropped (Beam's SDK harness prints each failed bundle's
  traceback there, in this process on the in-process DirectRunner and with
  LOOPBACK). The command's loggers and `say` still show; elsewhere, and at
  other levels, nothing changes."""
  swapped = _quiet_console and _discard_stderr()
  try:
    yield
  finally:
    # A stopping run stays quiet until its console closes.
    if swapped and signals.received() is None:
      _restore_stderr()


def say(line: str) -> None:
  """Prints one of the command's own lines to stderr, also once other
  writers' output is discarded (`Console.quiet_other_libraries`)."""
  stream = _real_stderr if _real_stderr is not None else _commands_stream()
  print(line, file=stream, flush=True)


def quiet_until_exit(argv: Sequence[str]) -> None:
  """Once a command's own lines are printed: at the default level, drops
  what other libraries log or print while the process exits (Beam's job
  servers say "Really destroying service" as they stop; Beam's in-process
  SDK harness prints the tracebacks of a stopped job's bundles)."""
  if log_level_from(argv) == DEFAULT_LOG_LEVEL:
    logging.getLogger().setLevel(logging.CRITICAL + 1)
    _discard_stderr()


def fail(message: str) -> int:
  """Prints a one-line ``error: ...`` to stderr; returns exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  return 2


def tensorflow_log_level(log_level: str) -> str:
  """``TF_CPP_MIN_LOG_LEVEL`` for a command's ``--log_level``: TensorFlow's
  C++ INFO and WARNING lines only when asked for."""
  level = logging.getLevelName(log_level.upper())
  return {logging.DEBUG: '0', logging.INFO: '0',
          logging.WARNING: '1'}.get(level, '2')


def log_level_from(argv: Sequence[str]) -> str:
  """``--log_level`` read ahead of parsing (the console comes first); the
  default for a missing or unknown one (the parser reports it)."""
  level = (flag_value(argv, 'log_level') or DEFAULT_LOG_LEVEL).upper()
  return level if level in LOG_LEVELS else DEFAULT_LOG_LEVEL
