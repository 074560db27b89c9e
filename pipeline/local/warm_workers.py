"""Starts the DirectRunner's worker processes while the launcher builds the job.

Why this module exists: with ``--direct_running_mode multi_processing`` Beam
starts each SDK worker process only once the launcher has imported Beam,
built the pipeline and started the job (about 4 s on the project's 2-core
machine), and each worker then imports Beam's SDK harness and TensorFlow and
loads the model (about 7 s more) before it reads its first document. The
second core idles through the launcher's part. Here the workers start first:

* `start` (in the launcher, as soon as the plan says "worker processes")
  starts one ``python -m pipeline.local.warm_workers serve`` process. It imports
  the SDK harness, TensorFlow (import only: its runtime starts after the
  fork) and this package, then forks one process per worker; each sizes
  TensorFlow's threads, loads and probes the bundle and waits on a Unix
  socket that the launcher opened and handed down.
* `WarmWorkers.runner` is Beam's FnApiRunner (what the DirectRunner runs)
  with one change: its worker command is ``python -m pipeline.local.warm_workers
  connect SOCKET``. That small client sends its environment (the runner's
  control, logging and options descriptors) to the first free warm process,
  which runs Beam's SDK harness with it, and mirrors its exit status,
  so Beam sees an ordinary worker subprocess.

Nothing is lost when a warm process is missing: a client that finds no free
warm process (more workers than warm processes, one that died while it
started) runs the harness itself (`runtime.sdk_worker`). A warm process
exits when its client goes away, and when the launcher does.
"""

import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from typing import Any, Optional

from pipeline.local.machine import (is_local_runner, local_input_bytes,
                                    local_tf_threads, local_workers)
from pipeline.local.processes import WARM_WORKERS_MODULE as MODULE
from runtime import (collector, console, internals, process_exit,
                     sdk_worker, signals)
from runtime.argv import flag_given, flag_value
from runtime.cores import available_cores
_LOGGER = logging.getLogger(__name__)
_SOCKET_NAME = 'workers.sock'
# The longest path a Unix socket can be bound to on Linux (``sun_path`` is
# 108 bytes with its terminating NUL), and a short folder for one.
_MAX_SOCKET_PATH = 107
_SHORT_TEMP = '/tmp'
# The client's first line is its environment; the answers are one line each.
_ACCEPTED = b'accepted\n'
_EXIT = b'exit '
# A client waits this long for a warm process before starting cold.
ACCEPT_TIMEOUT_SECS = 300.0


class WarmWorkers:
  """The warm process (with the workers it forks) and the socket their
  clients reach them by.

  Args:
    process: the started ``serve`` process, its stdin and stderr piped.
    socket_path: the Unix socket the clients connect to.
  """
  def __init__(self, process: subprocess.Popen, socket_path: str):
    self.process = process
    self.socket_path = socket_path
    self._held: Optional[list[bytes]] = []
    self._lock = threading.Lock()
    self._relay_thread = threading.Thread(target=self._relay,
                                          name='warm-worker-stderr',
                                          daemon=True)
    self._relay_thread.start()

  def _relay(self) -> None:
    """Copies the warm processes' stderr, line by line, to this one's."""
    for line in iter(self.process.stderr.readline, b''):
      with self._lock:
        if self._held is not None:
          self._held.append(line)
          continue
      _write_stderr(line)

  def forward_stderr(self) -> None:
    """Writes the warm processes' stderr to this process's from now on.

    Until then it is held: they may start before `runtime.console` filters
    this process's stderr (TensorFlow's start-up notices).
    """
    with self._lock:
      held, self._held = self._held or [], None
    for line in held:
      _write_stderr(line)

  @property
  def worker_command(self) -> str:
    """The shell command Beam runs for each worker process."""
    # SIGINT ignored from the start, as for a cold worker (`cold_runner`).
    return (f'trap "" INT; exec {_quote(sys.executable)} -m {MODULE} connect '
            f'{_quote(self.socket_path)}')

  def runner(self, options: Any):
    """Beam's FnApiRunner whose worker processes are these warm processes
    (`local_runner`)."""
    return local_runner(options, self.worker_command)

  def close(self, wait_secs: float = 10.0, *, forward: bool = True) -> None:
    """Stops the warm processes that are left and removes the socket.

    Args:
      wait_secs: how long they may take to exit.
      forward: copy what they printed and was held to this process's
        stderr; else drop it (start-up notices of workers no job took).
    """
    try:
      self.process.stdin.close()  # The warm processes exit on this EOF.
    except OSError:
      pass
    try:
      self.process.wait(wait_secs)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()
    self._relay_thread.join(wait_secs)
    if forward:
      self.forward_stderr()
    else:
      with self._lock:
        self._held = self._held and []
    try:
      os.remove(self.socket_path)
      os.rmdir(os.path.dirname(self.socket_path))
    except OSError:
      pass

  def __enter__(self) -> 'WarmWorkers':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def local_runner(options: Any, command: str):
  """Beam's FnApiRunner whose worker processes run the shell ``command``.

  Args:
    options: PipelineOptions for the job, its own copy: its
      ``direct_running_mode`` is set to None, as ``multi_processing`` would
      replace this runner's worker command (``direct_num_workers`` stays).
      Build the pipeline with them (they are the runner's ``options``).
    command: the shell command that starts one worker process.
  """
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
  options.view_as(DirectOptions).direct_running_mode = None
  runner = internals.direct_runner_with_worker_command(options, command)
  runner.options = options  # What the pipeline must run with.
  return runner


def cold_runner(options: Any):
  """Beam's FnApiRunner whose worker processes start cold, each running
  Beam's harness through `runtime.sdk_worker` (`local_runner`)."""
  # Started with SIGINT ignored until `runtime.sdk_worker` restores it, so
  # that a Ctrl-C while the interpreter starts prints no traceback.
  return local_runner(options, f'trap "" INT; exec {_quote(sys.executable)} '
                      f'-m {sdk_worker.MODULE}')


def supported() -> bool:
  """Whether warm workers run here: Linux (fork after TensorFlow's import,
  Unix sockets; measured only there)."""
  return sys.platform.startswith('linux')


def _write_stderr(line: bytes) -> None:
  try:
    os.write(2, line)  # One write per line: lines of processes stay whole.
  except OSError:
    pass


def _quote(text: str) -> str:
  import shlex  # pylint: disable=import-outside-toplevel
  return shlex.quote(text)


def start(workers: int, *, model: str, tf_threads: int = 0,
          scoring_function: str = 'auto') -> WarmWorkers:
  """Starts the warm process that forks ``workers`` SDK worker processes.

  Args:
    workers: how many worker processes the job runs.
    model: the bundle the workers load while they wait.
    tf_threads: TensorFlow threads per process (0: TensorFlow's default).
    scoring_function: ``auto`` or ``signature`` (see `ScoreDocuments`).

  Returns:
    The warm processes; `WarmWorkers.close` them when the job is over.
  """
  directory = tempfile.mkdtemp(prefix='ja-doc-score-workers-')
  path = os.path.join(directory, _SOCKET_NAME)
  if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
    # A deep TMPDIR: the socket goes to the system's own temp folder.
    os.rmdir(directory)
    directory = tempfile.mkdtemp(prefix='ja-doc-score-workers-',
                                 dir=_SHORT_TEMP)
    path = os.path.join(directory, _SOCKET_NAME)
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    listener.bind(path)
    listener.listen(max(8, workers))
    fd = listener.fileno()
    process = signals.start_ignoring(
        [sys.executable, '-m', MODULE, 'serve', '--socket_fd', str(fd),
         '--workers', str(workers), '--model', model,
         '--tf_threads', str(tf_threads),
         '--scoring_function', scoring_function], ignored=('INT',),
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(fd,))
  finally:
    # Only the warm processes hold the socket now: once each has taken its
    # client, or died, a connection is refused and the client starts cold.
    listener.close()
  return WarmWorkers(process, path)


# Started before Beam is imported, from the command line as typed.

_early: Optional[tuple[tuple, WarmWorkers]] = None


def start_early(argv: list[str]) -> None:
  """Starts the warm workers that `pipeline.score` will ask for, if any.

  Reads only the command line and the input's size, with `pipeline.local.machine`'s
  rule, so it can run before Beam is imported; `take_early` later hands them
  over if the job's plan asks for the same, or stops them.
  """
  global _early  # pylint: disable=global-statement
  if (_early is not None or not supported() or '-h' in argv or
      '--help' in argv or flag_given(argv, 'watch')):
    return  # --watch scores in its own process (`pipeline.cli.watch`).
  model, pattern = flag_value(argv, 'model'), flag_value(argv, 'input')
  if (not model or not pattern or
      not is_local_runner(flag_value(argv, 'runner')) or
      (flag_value(argv, 'warm_workers') or 'auto') != 'auto'):
    return
  mode = flag_value(argv, 'direct_running_mode')
  number = flag_value(argv, 'direct_num_workers')
  chosen = mode is not None or number is not None
  try:
    cores = available_cores()
    workers, in_process = local_workers(
        mode or 'in_memory', int(number or 1), chosen=chosen,
        size=0 if chosen else local_input_bytes(pattern), cores=cores, warm=True)
    if in_process:
      return
    tf_threads = local_tf_threads(int(flag_value(argv, 'tf_threads') or -1),
                                  workers, cores)
  except ValueError:
    return  # A malformed number: the command's parser says so.
  key = (workers, model, tf_threads,
         flag_value(argv, 'scoring_function') or 'auto')
  # As the command's console will set it: TensorFlow's C++ notices stay
  # quiet in the warm processes too.
  os.environ.setdefault(console.TF_LOG_ENV, console.tensorflow_log_level(
      console.log_level_from(argv)))
  try:
    _early = (key, start(workers, model=model, tf_threads=tf_threads,
                         scoring_function=key[3]))
  except OSError as e:  # The job's workers start cold instead.
    _LOGGER.debug('Could not start warm workers: %s', e)


def take_early(workers: int, *, model: str, tf_threads: int,
               scoring_function: str) -> Optional[WarmWorkers]:
  """The workers `start_early` started, if they fit the job; else None.

  Ones that do not fit are stopped.
  """
  global _early  # pylint: disable=global-statement
  early, _early = _early, None
  if early is None:
    return None
  key, warm = early
  if key == (workers, model, tf_threads, scoring_function):
    return warm
  warm.close()
  return None


def close_early() -> None:
  """Stops workers `start_early` started that no job took."""
  global _early  # pylint: disable=global-statement
  early, _early = _early, None
  if early is not None:
    early[1].close(forward=False)


# The warm processes: one imports, then forks one process per worker.


def _exit_when_closed(fd: int, status: int) -> None:
  """Ends this process once file descriptor ``fd`` reaches its end.

  Reads with `os.read` in a daemon thread: no buffered stream's lock, which a
  fork could leave held.
  """
  def watch():
    try:
      while os.read(fd, 65536):
        pass
    except OSError:
      pass
    os._exit(status)  # pylint: disable=protected-access
  threading.Thread(target=watch, name='warm-worker-watch', daemon=True).start()


def _import_worker_modules() -> None:
  """Imports what a worker runs: Beam's SDK harness, TensorFlow, the package.

  TensorFlow is imported only: its runtime (thread pools) starts when a model
  loads, after the fork.
  """
  # pylint: disable=import-outside-toplevel,unused-import
  import apache_beam.runners.worker.sdk_worker_main
  # What the scoring job's DoFns are made of.
  import pipeline.io.readers
  import pipeline.io.writers
  import pipeline.progress
  import transforms
  from runtime.tensorflow_import import import_tensorflow
  import_tensorflow()


def _load_model(model: str, tf_threads: int, scoring_function: str) -> None:
  """Loads (and probes) the model this worker will score with."""
  # pylint: disable=import-outside-toplevel
  from model.bundle import load_bundle
  from transforms.handler import set_tf_threads
  set_tf_threads(tf_threads)
  try:
    # Cached per process: the handler's load_model finds it loaded.
    load_bundle(model, check_model=False).load_signature(
        fast=scoring_function == 'auto')
  except Exception:  # pylint: disable=broad-except
    pass  # The worker's own load reports it, as a cold worker's would.


def _still_there(conn: socket.socket) -> bool:
  """Whether the peer of ``conn`` has not closed it (it sends no more)."""
  conn.setblocking(False)
  try:
    return conn.recv(1) != b''
  except BlockingIOError:
    return True
  except OSError:
    return False
  finally:
    conn.setblocking(True)


def _take_client(listener: socket.socket) -> Optional[tuple[socket.socket,
                                                              dict]]:
  """Accepts connections until one sends an environment; None if closed."""
  while True:
    try:
      conn, _ = listener.accept()
    except OSError:
      return None
    try:
      with conn.makefile('rb') as f:
        line = f.readline()
      env = json.loads(line) if line else None
    except (OSError, ValueError):
      env = None
    if isinstance(env, dict) and _still_there(conn):
      return conn, env
    conn.close()  # A client that gave up waiting.


def _work(listener: socket.socket, model: str, tf_threads: int,
          scoring_function: str) -> int:
  """One forked worker: loads the model, takes a client, runs the harness."""
  _exit_when_closed(0, 1)  # The launcher went away.
  try:
    _load_model(model, tf_threads, scoring_function)
    taken = _take_client(listener)
  finally:
    listener.close()
  if taken is None:
    return 0
  conn, env = taken
  conn.sendall(_ACCEPTED)
  # The client is the process Beam waits on: if it goes, so does this one.
  _exit_when_closed(conn.fileno(), 1)
  # The runner's addresses and options, as Beam's worker reads them. Only
  # set, never cleared: TensorFlow's threads are running now.
  os.environ.update({str(k): str(v) for k, v in env.items()
                     if os.environ.get(str(k)) != str(v)})
  status = 1
  try:
    status = sdk_worker.harness()
  except SystemExit as e:  # The harness's own status, as a cold worker's.
    status = e.code if isinstance(e.code, int) else int(e.code is not None)
  finally:
    try:
      conn.sendall(_EXIT + str(status).encode() + b'\n')
    except OSError:
      pass
  return status


def serve(socket_fd: int, workers: int, model: str, tf_threads: int,
          scoring_function: str) -> int:
  """Imports once, then forks ``workers`` processes that each serve a client.

  Returns when they have all ended.
  """
  _exit_when_closed(0, 1)  # The launcher went away.
  listener = socket.socket(fileno=socket_fd)
  # Python's recipe for forking without exec: the collector paused from the
  # start (`runtime.collector`), the objects so far frozen before the fork and
  # the collector resumed in each child. The children's collections then
  # skip (and do not write to, so do not copy) the several hundred thousand
  # objects the imports made.
  collector.pause()
  try:
    _import_worker_modules()
  except Exception:  # pylint: disable=broad-except
    # The clients start cold, and meet (and report) the same problem.
    listener.close()
    return 1
  gc.freeze()
  children = []
  for _ in range(workers):
    pid = os.fork()
    if pid == 0:
      collector.resume()
      status = 1
      try:
        status = _work(listener, model, tf_threads, scoring_function)
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
      finally:
        _end(status)
    children.append(pid)
  listener.close()
  for pid in children:
    os.waitpid(pid, 0)
  return 0


def _end(status: int) -> None:
  """Ends this process with ``status``, without the interpreter's teardown
  (`runtime.process_exit`)."""
  process_exit.exit_now(status)


# The client Beam starts: standard library only, so that it starts at once.


def _run_cold() -> None:
  # SIGINT stays ignored through the exec; `runtime.sdk_worker` restores it
  # once its interpreter has started.
  os.execv(sys.executable, [sys.executable, '-m', sdk_worker.MODULE])


def connect(path: str) -> int:
  """Hands this worker's environment to a warm process; returns its status.

  Starts Beam's own worker in this process instead when no warm process
  takes it.
  """
  conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    conn.settimeout(ACCEPT_TIMEOUT_SECS)
    conn.connect(path)
    conn.sendall(json.dumps(dict(os.environ)).encode() + b'\n')
    reader = conn.makefile('rb')
    accepted = reader.readline() == _ACCEPTED
  except OSError:
    accepted = False
  if not accepted:
    conn.close()
    _run_cold()
  conn.settimeout(None)
  try:
    line = reader.readline()
  except OSError:
    line = b''
  if line.startswith(_EXIT):
    try:
      return int(line[len(_EXIT):])
    except ValueError:
      pass
  print(f'{MODULE}: the warm worker process ended without a status '
        f'(killed?)', file=sys.stderr)
  return 1


def main(argv: Optional[list[str]] = None) -> int:
  import argparse  # pylint: disable=import-outside-toplevel
  # Ctrl-C reaches the terminal's whole process group: the launcher handles
  # it and stops the job, and these processes end with it (their stdin or
  # their client's connection closes), without a traceback of their own.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  sdk_worker.log_in_default_format()
  parser = argparse.ArgumentParser(
      prog=f'python -m {MODULE}',
      description='A Beam SDK worker process started ahead of its job '
      '(used by pipeline.score; not a command to run by hand).')
  commands = parser.add_subparsers(dest='command', required=True)
  serve_parser = commands.add_parser('serve')
  serve_parser.add_argument('--socket_fd', type=int, required=True)
  serve_parser.add_argument('--workers', type=int, default=1)
  serve_parser.add_argument('--model', required=True)
  serve_parser.add_argument('--tf_threads', type=int, default=0)
  serve_parser.add_argument('--scoring_function', default='auto')
  connect_parser = commands.add_parser('connect')
  connect_parser.add_argument('socket_path')
  args = parser.parse_args(argv)
  if args.command == 'connect':
    return connect(args.socket_path)
  return serve(args.socket_fd, args.workers, args.model, args.tf_threads,
               args.scoring_function)


if __name__ == '__main__':
  _status = main()
  if 'tensorflow' in sys.modules:
    _end(_status)
  sys.exit(_status)
