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
  """``ja-doc-score``: `pipeline.score.cli` with warm workers started first."""
  from pipeline import warm_workers  # pylint: disable=import-outside-toplevel
  warm_workers.start_early(sys.argv[1:])
  from pipeline import score as command  # pylint: disable=import-outside-toplevel
  command.cli()
