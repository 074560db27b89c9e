"""Pauses Python's cyclic garbage collector while a process imports.

Why this module exists: the commands, the warm worker process
(`pipeline.local.warm_workers`) and every process that imports TensorFlow
(`runtime.tensorflow_import`) create hundreds of thousands of objects that
live as long as the process, and each time the collector's thresholds trip it
walks all of them that have piled up so far. Measured on the project's
2-core machine (two runs each): Beam's SDK harness, this package and
TensorFlow took 7.3 s to import with the collector running and 5.5 s with it
paused; TensorFlow's import alone 4.9 to 5.5 s against 3.6 to 3.8 s.

Two ways to pause it, both here: `paused` for a block (it restores the state
it found, so blocks nest), and `pause`/`resume` for a span that crosses
functions: from a command's first line until its job is built, and in the
warm process until it forks. Standard library only, so that it can run
before Beam is imported.
"""

import contextlib
import gc
from typing import Iterator

# Whether `pause` disabled the collector (and so `resume` may enable it).
_paused = False


def pause() -> None:
  """Disables the cyclic garbage collector until `resume`."""
  global _paused  # pylint: disable=global-statement
  if gc.isenabled():
    gc.disable()
    _paused = True


def resume(*, freeze: bool = False) -> None:
  """Enables the collector again if `pause` disabled it.

  Args:
    freeze: first move every object so far to the collector's permanent
      generation (`gc.freeze`), where no later collection walks them: for a
      process whose imported modules live as long as it does. Otherwise the
      next collections walk them all once.
  """
  global _paused  # pylint: disable=global-statement
  if _paused:
    _paused = False
    if freeze:
      gc.freeze()
    gc.enable()


@contextlib.contextmanager
def paused() -> Iterator[None]:
  """Pauses the collector for the block and restores its state afterwards."""
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()
