"""The console of the project's commands: strict options and a quiet start-up.

Why this module exists: TensorFlow and Beam print start-up notices on every
run (TensorFlow's C++ block, ``failed call to cuInit``, oneDNN, Beam's
``apitools not found``...), Beam configures the root logger when it is
imported, and argparse neither suggests a near option nor shows defaults.
The three commands (``pipeline.score``, ``model.train``, ``model.import_keras``)
share this set-up so that a run prints only the command's own lines unless
``--log_level`` asks for more.

It lives in ``model/`` because ``model.train`` and ``model.import_keras`` use
it and nothing may import from ``pipeline/``. Beam is used only for its
filesystems (the path checks), imported when they run.

Importing this module (``model`` does, first) drops two of Beam's notices
that are logged on the root logger while Beam is imported or running, and
mean nothing for this project: ``apitools not found`` and ``Resource module
is not available``. Nothing else is filtered on import.
"""

import argparse
import difflib
import logging
import os
import shutil
import subprocess
import sys
from typing import Iterable, Optional, Sequence

PROJECT_LOGGERS = ('model', 'transforms', 'pipeline')
LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR')
DEFAULT_LOG_LEVEL = 'ERROR'

# Notices Beam logs on the root logger, on import and per RunInference call.
_BEAM_NOTICES = ('apitools not found', 'Resource module is not available')

# Lines the stderr filter drops at the default log level. Everything else,
# errors included, goes through unchanged.
_NOISE = (
    # absl's notice before TensorFlow's first C++ log line.
    r'^WARNING: All log messages before absl::InitializeLog\(\) is called',
    # C++ INFO and WARNING lines (absl/glog format), e.g. cudart_stub.cc,
    # cpu_feature_guard.cc; ERROR and FATAL lines pass.
    r'^[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\]',
    # The continuation line of cpu_feature_guard's notice.
    r'^To enable the following instructions: ',
    # An ERROR line TensorFlow prints on every machine without a GPU driver.
    r'failed call to cuInit',
    r'oneDNN (custom operations|supports)',
    # Python log lines below ERROR in logging's default format, printed by
    # Beam's SDK worker subprocesses (DirectRunner multi_processing).
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
signal.signal(signal.SIGINT, signal.SIG_IGN)
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


# Beam's DirectRunner relays each worker subprocess's log entries through this
# logger as ``Worker: <entry>``; a failing bundle arrives there as a whole
# traceback, which the command then reports in its own one-line error.
_WORKER_RELAY = ('apache_beam.runners.portability.local_job_service',
                 'Worker: %s')


class _DropWorkerRelay(logging.Filter):
  """Drops worker log entries relayed by the DirectRunner (quiet level)."""
  def filter(self, record: logging.LogRecord) -> bool:
    return (record.name, record.msg) != _WORKER_RELAY


class _DropBeamNotices(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and
                record.msg.startswith(_BEAM_NOTICES))


def _install_notice_filter() -> None:
  root = logging.getLogger()
  if not any(isinstance(f, _DropBeamNotices) for f in root.filters):
    root.addFilter(_DropBeamNotices())


_install_notice_filter()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Shows an option's default where it has one worth showing."""
  def _get_help_string(self, action):
    if action.default in (None, False, argparse.SUPPRESS):
      return action.help
    return super()._get_help_string(action)


class StrictArgumentParser(argparse.ArgumentParser):
  """An ArgumentParser that names the closest valid option on a typo.

  Abbreviations are off (``--form`` is not ``--format``): the options are
  also parsed by Beam, which does not expand them.

  Args:
    extra_options: option strings accepted besides this parser's own (Beam's
      pipeline options), used for suggestions.
  """
  def __init__(self, *args, extra_options: Iterable[str] = (), **kwargs):
    kwargs.setdefault('allow_abbrev', False)
    kwargs.setdefault('formatter_class', HelpFormatter)
    super().__init__(*args, **kwargs)
    self.extra_options = set(extra_options)

  def option_names(self) -> set[str]:
    """Every option string this parser and ``extra_options`` accept."""
    names = {s for a in self._actions for s in a.option_strings}
    return names | self.extra_options

  def parse_args(self, args=None, namespace=None):
    parsed, unknown = self.parse_known_args(args, namespace)
    if unknown:
      self.reject_unknown(unknown)
    return parsed

  def error(self, message: str):
    """One line and the hint to ``--help`` instead of the whole usage."""
    self.exit(2, f'{self.prog}: error: {message}\n'
              f'Run {self.prog} --help for the options.\n')

  def reject_unknown(self, unknown: Sequence[str]) -> None:
    """Exits with status 2, naming the first unknown argument."""
    self.error(unknown_argument_message(unknown, self.option_names()))


def prog_name(module_command: str) -> str:
  """The console script's name when run as one (``ja-doc-...``), else
  ``module_command`` (``python -m ...``)."""
  script = os.path.basename(sys.argv[0]) if sys.argv else ''
  return script if script.startswith('ja-doc-') else module_command


def unknown_argument_message(unknown: Sequence[str],
                             valid: Iterable[str]) -> str:
  """``unrecognized option --x (did you mean --y?)`` for the first unknown."""
  options = [u for u in unknown if u.startswith('-') and u != '--']
  if not options:
    return f'unexpected argument {unknown[0]!r}'
  name = options[0].split('=', 1)[0]
  valid = sorted(set(valid))
  message = f'unrecognized option {name}'
  normalized = '--' + name.lstrip('-').replace('-', '_')
  if normalized in valid:
    guess = [normalized]
  else:
    guess = difflib.get_close_matches(normalized, valid, n=1, cutoff=0.6)
  if guess:
    message += f' (did you mean {guess[0]}?)'
  return message


def non_negative_int(text: str) -> int:
  """argparse type: an integer >= 0."""
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be 0 or more; received {text}')
  return value


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be 1 or more; received {text}')
  return value


def non_negative_float(text: str) -> float:
  """argparse type: a number >= 0."""
  value = float(text)
  if not value >= 0:
    raise argparse.ArgumentTypeError(f'must be 0 or more; received {text}')
  return value


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      '--log_level', default=DEFAULT_LOG_LEVEL, choices=LOG_LEVELS,
      type=str.upper,
      help='messages of Beam, TensorFlow and other libraries to show; the '
      'command\'s own lines always show, and below ERROR the start-up notices '
      'are no longer filtered')


class _ConsoleFormatter(logging.Formatter):
  """The command's INFO lines as they are; anything else with its level."""
  def format(self, record: logging.LogRecord) -> str:
    message = super().format(record)
    own = record.name.split('.')[0] in PROJECT_LOGGERS + ('__main__',)
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
    tf_level = {logging.DEBUG: '0', logging.INFO: '0', logging.WARNING: '1'}
    # Read by TensorFlow when it starts, here and in worker subprocesses.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', tf_level.get(level, '2'))
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
    root.setLevel(level)
    for name in PROJECT_LOGGERS:
      logging.getLogger(name).setLevel(min(level, logging.WARNING))
    for name in (command, '__main__'):
      logging.getLogger(name).setLevel(min(level, logging.INFO))
    self._captured_warnings = quiet
    if quiet:
      logging.captureWarnings(True)
    self._filter: Optional[_StderrFilter] = None
    if quiet and filter_stderr:
      self._filter = _StderrFilter.start('|'.join(f'(?:{p})' for p in _NOISE))

  def close(self) -> None:
    if self._filter is not None:
      self._filter.stop()
      self._filter = None
    if self._captured_warnings:
      logging.captureWarnings(False)
      self._captured_warnings = False
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
    try:
      process = subprocess.Popen(
          [sys.executable, '-I', '-S', '-c', _FILTER_PROGRAM, pattern, record,
           inside],
          stdin=subprocess.PIPE, stdout=saved, close_fds=True)
    except OSError:
      os.close(saved)
      return None
    os.dup2(process.stdin.fileno(), 2)
    process.stdin.close()
    return cls(process, saved)

  def stop(self) -> None:
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self._saved_fd, 2)
    os.close(self._saved_fd)
    try:
      # Worker subprocesses that outlive the run keep the pipe open; their
      # lines still go through once they exit.
      self._process.wait(timeout=5)
    except subprocess.TimeoutExpired:
      pass


class UsageError(ValueError):
  """A problem the user fixes with an option; the message names it."""


def check_input_file(path: str, option: str) -> None:
  """Raises `UsageError` unless ``path`` is an existing file."""
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  if '://' not in path and os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a directory; give a file.')
  try:
    exists = FileSystems.exists(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{option} {path}: cannot read it ({e}).') from e
  if not exists:
    raise UsageError(f'{option} {path}: no such file.')


def check_writable_dir(path: str, option: str) -> None:
  """Raises `UsageError` unless files can be written in directory ``path``.

  Writes and deletes a probe file; a local directory created for it is
  removed again.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  from model import storage  # pylint: disable=import-outside-toplevel
  local = '://' not in path
  if local and os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a file; give a directory.')
  created = None  # the highest local directory the probe creates
  if local and not os.path.exists(path):
    created = os.path.abspath(path)
    while not os.path.exists(os.path.dirname(created)):
      created = os.path.dirname(created)
  probe = FileSystems.join(path, f'_probe-{os.getpid()}')
  try:
    storage.write_bytes(probe, b'')
    FileSystems.delete([probe])
  except Exception as e:  # pylint: disable=broad-except
    reason = getattr(e, 'strerror', None) or str(e).splitlines()[0]
    raise UsageError(f'{option} {path}: cannot write there ({reason}).') from e
  if created:
    shutil.rmtree(created, ignore_errors=True)


def check_bundle_output(path: str, option: str, *, overwrite: bool,
                        overwrite_option: str = '--overwrite') -> None:
  """Raises `UsageError` if a bundle cannot be written to ``path``.

  That is: ``path`` is a file, holds a bundle and ``overwrite`` is off, or
  cannot be written (checked with a probe file, removed again).
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  local = '://' not in path
  if local and os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a file; give a directory.')
  if FileSystems.exists(FileSystems.join(path, 'manifest.json')):
    if not overwrite:
      raise UsageError(f'{option} {path}: a bundle exists there; pass '
                       f'{overwrite_option} to replace it, or choose another '
                       f'{option}.')
    return
  check_writable_dir(path, option)


def fail(message: str) -> int:
  """Prints a one-line ``error: ...`` to stderr; returns exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  return 2

