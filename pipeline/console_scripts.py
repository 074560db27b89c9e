"""The ``ja-doc-score`` console script, which starts before `pipeline.score`
is imported.

Why this module exists: importing `pipeline.score` imports Beam (about 2 s).
A console script's target module is imported before its function runs, so
the script points here, where the warm worker processes
(`pipeline.warm_workers`) are started first, as ``python -m pipeline.score``
starts them before its own imports.
"""

import sys
from typing import NoReturn


def score() -> NoReturn:
  """``ja-doc-score``: `pipeline.score.cli` with warm workers started first
  (and the garbage collector paused while it imports, `pipeline.startup`)."""
  # pylint: disable=import-outside-toplevel
  from pipeline import startup, warm_workers
  warm_workers.start_early(sys.argv[1:])
  startup.pause_collector()  # Until the job is built.
  from pipeline import score as command  # pylint: disable=import-outside-toplevel
  command.cli()
