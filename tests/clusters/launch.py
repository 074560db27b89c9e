"""What starting any of the test clusters takes: a distribution from PyPI,
processes that log to files, and a wait for the cluster to report ready.

Shared by `tests.clusters.flink` and `tests.clusters.spark`, so that both
download, start and wait the same way and fail with the same kind of error.
"""

import json
import logging
import os
import pathlib
import subprocess
import sys
import time
import urllib.request
from typing import Any, Callable

_LOGGER = logging.getLogger(__name__)


class ClusterError(RuntimeError):
  """The cluster could not be had; the message names the log to read."""


def download_sdist(package: str, version: str, dist_dir: str) -> str:
  """The source distribution of ``package==version`` in ``dist_dir``,
  downloaded with pip where it is not there yet.

  Raises:
    ClusterError: pip could not download it.
  """
  path = os.path.join(dist_dir, f'{package}-{version}.tar.gz')
  if not os.path.exists(path):
    os.makedirs(dist_dir, exist_ok=True)
    _LOGGER.info('Downloading %s==%s (source) into %s', package, version,
                 dist_dir)
    done = subprocess.run(
        [sys.executable, '-m', 'pip', 'download', '--no-deps',
         '--no-binary', ':all:', '-d', dist_dir, f'{package}=={version}'],
        capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(path):
      raise ClusterError(
          f'expected pip to download {package}=={version} as {path}; it '
          f'exited {done.returncode}: {done.stderr.strip()[-500:]}')
  return path


def start_logged(name: str, command: list[str], env: dict[str, str],
                 logs: pathlib.Path) -> subprocess.Popen:
  """Starts ``command`` in ``logs``, its output in ``logs/NAME.log``."""
  with open(logs / f'{name}.log', 'wb') as out:
    return subprocess.Popen(command, env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=str(logs))


def wait_until_ready(url: str, ready: Callable[[Any], bool], *, engine: str,
                     processes: dict[str, subprocess.Popen],
                     logs: pathlib.Path, timeout: float) -> tuple[bool, Any]:
  """Polls the JSON at ``url`` until ``ready(it)``, or ``timeout`` seconds.

  Returns:
    (whether it became ready, the last JSON seen or None).

  Raises:
    ClusterError: one of ``processes`` exited meanwhile (the message names
      its log).
  """
  deadline, seen = time.time() + timeout, None
  while time.time() < deadline:
    for name, process in processes.items():
      if process.poll() is not None:
        raise ClusterError(f'the {engine} {name} exited with '
                           f'{process.returncode} while starting; see '
                           f'{logs / (name + ".log")}')
    try:
      with urllib.request.urlopen(url, timeout=5) as r:
        seen = json.load(r)
    except OSError:
      seen = None
    if seen and ready(seen):
      return True, seen
    time.sleep(0.5)
  return False, seen
