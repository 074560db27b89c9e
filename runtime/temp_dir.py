"""One temporary folder per command run, removed however the run ends.

Why this module exists: a scoring run makes temporary folders under the
system's temp directory: its progress files, the warm workers' socket,
Beam's staging folders for a portable job, and (on Flink and Spark) the job
server's own. Each part cleaned up its own, and an interrupted or failed run
left the rest behind. `run_temp_dir` gives the whole run one folder instead:
``TMPDIR`` and Python's `tempfile` point into it for this process and every
process it starts (Java's ``java.io.tmpdir`` is set from it by
`pipeline.job_servers`), and it is removed when the run ends, whatever
happens.
"""

import atexit
import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from runtime import signals

# The prefix of the folder, under the system's temp directory.
PREFIX = 'ja-doc-run-'
_TMPDIR = 'TMPDIR'


@contextlib.contextmanager
def run_temp_dir(*, remove_at_exit: bool = False) -> Iterator[str]:
  """Points temporary files into a new folder for the block; removes it.

  Args:
    remove_at_exit: remove it as the process exits (an ``atexit`` handler
      registered now, so it runs after those registered later, such as
      Beam's job server's, which removes a folder of its own inside),
      instead of at the end of the block.

  Yields:
    The folder's path.
  """
  root = tempfile.mkdtemp(prefix=PREFIX)
  if remove_at_exit:
    atexit.register(shutil.rmtree, root, ignore_errors=True)
  saved_env, saved_tempdir = os.environ.get(_TMPDIR), tempfile.tempdir
  os.environ[_TMPDIR] = root
  tempfile.tempdir = root
  try:
    yield root
  finally:
    with signals.held():  # Removed whole, even as a stop signal arrives.
      tempfile.tempdir = saved_tempdir
      if saved_env is None:
        os.environ.pop(_TMPDIR, None)
      else:
        os.environ[_TMPDIR] = saved_env
      if not remove_at_exit:
        shutil.rmtree(root, ignore_errors=True)
