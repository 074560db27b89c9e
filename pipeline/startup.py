"""Pauses Python's cyclic garbage collector while a command imports Beam.

Why this module exists: ``python -m pipeline.score``, ``ja-doc-score`` and
the warm worker process (`pipeline.warm_workers`) import Beam, this package
and TensorFlow before they do any work. Those imports create hundreds of
thousands of objects that live as long as the process, and each time the
collector's thresholds trip it walks all of them that have piled up so far.
Measured on the project's 2-core machine (two runs each): Beam's SDK harness,
this package and TensorFlow took 7.3 s to import with the collector running
and 5.5 s with it paused. `model.tensorflow_import` pauses it around
TensorFlow's import wherever that happens; this module, standard library
only so that it can run before Beam is imported, pauses it from a command's
first line until its job is built (`resume_collector`), and in the warm
worker process until it forks.
"""

import gc

# Whether `pause_collector` disabled the collector (and so may enable it).
_paused = False


def pause_collector() -> None:
  """Disables the cyclic garbage collector until `resume_collector`."""
  global _paused  # pylint: disable=global-statement
  if gc.isenabled():
    gc.disable()
    _paused = True


def resume_collector(*, freeze: bool = False) -> None:
  """Enables the collector again if `pause_collector` disabled it.

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
