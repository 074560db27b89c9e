"""Local services the runner tests start: ports, a job service, a worker pool.

Shared by the portable, Flink/Spark and dead-worker tests so that each starts
and stops Beam's services the same way.
"""

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Iterator

ROOT = str(pathlib.Path(__file__).resolve().parent.parent)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def env() -> dict[str, str]:
  """This interpreter first on PATH (a worker pool starts ``python``)."""
  return dict(os.environ,
              PATH=os.path.dirname(sys.executable) + os.pathsep +
              os.environ.get('PATH', ''),
              PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
              TF_CPP_MIN_LOG_LEVEL='3')


def wait_for_port(port: int, process, log, timeout: float = 120.0) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f'service on port {port} exited early; see {log}')
    with socket.socket() as s:
      if s.connect_ex(('localhost', port)) == 0:
        return
    time.sleep(0.3)
  raise TimeoutError(f'nothing listens on port {port}; see {log}')


def stop(processes) -> None:
  for p in processes:
    p.terminate()
  for p in processes:
    try:
      p.wait(timeout=30)
    except subprocess.TimeoutExpired:
      p.kill()


@contextlib.contextmanager
def service(command: list[str], log: pathlib.Path, port: int
            ) -> Iterator[subprocess.Popen]:
  """Runs ``command`` until the block ends, once ``port`` answers."""
  with open(log, 'wb') as out:
    process = subprocess.Popen(command, cwd=ROOT, env=env(), stdout=out,
                               stderr=subprocess.STDOUT)
  try:
    wait_for_port(port, process, log)
    yield process
  finally:
    stop([process])


def worker_pool(logs: pathlib.Path, port: int):
  """Beam's worker pool: one Python process per SDK worker it is asked for."""
  return service([sys.executable, '-m',
                  'apache_beam.runners.worker.worker_pool_main',
                  '--service_port', str(port)], logs / 'pool.log', port)


def job_service(logs: pathlib.Path, port: int):
  """Beam's local (Python) job service."""
  return service([sys.executable, '-m',
                  'apache_beam.runners.portability.local_job_service_main',
                  '--port', str(port)], logs / 'job.log', port)
