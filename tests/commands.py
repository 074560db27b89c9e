"""Running the package's commands as a user runs them, in a subprocess."""

import os
import pathlib
import subprocess
import sys

ROOT = str(pathlib.Path(__file__).resolve().parent.parent)


def run_command(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
  """Runs ``python -m ARGS`` with this worktree first on the path, and
  without the test session's TensorFlow log level (the command must quiet
  TensorFlow itself)."""
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)
