"""The console scripts, and the command lines ``python -m pipeline.*`` run.

Why this module exists: importing the scoring command imports Beam (about
2 s). A console script's target module is imported before its function
runs, so ``ja-doc-score`` points here, where the warm worker processes
(`pipeline.local.warm_workers`) are started and the garbage collector is
paused (`runtime.collector`) before that import. ``python -m
pipeline.score`` does the same through `score`.
"""

import sys
from typing import NoReturn


def score() -> NoReturn:
  """``ja-doc-score``: the scoring command, with warm workers started first
  (and the garbage collector paused while it imports)."""
  # pylint: disable=import-outside-toplevel
  from pipeline.local import warm_workers
  from runtime import collector
  warm_workers.start_early(sys.argv[1:])
  collector.pause()  # Until the job is built.
  from pipeline.cli import score as command
  command.cli()


def train() -> NoReturn:
  """``ja-doc-train``: the training command."""
  from pipeline.cli import train as command  # pylint: disable=import-outside-toplevel
  command.cli()


def import_keras() -> NoReturn:
  """``ja-doc-import``: the import command."""
  from pipeline.cli import import_model as command  # pylint: disable=import-outside-toplevel
  command.cli()
