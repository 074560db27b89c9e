"""The console scripts, and the command lines ``python -m pipeline.*`` run.

Why this module exists: importing the scoring command imports Beam (about
2 s). A console script's target module is imported before its function
runs, so ``ja-doc-score`` points here, where the warm worker processes
(`pipeline.local.warm_workers`) are started and the garbage collector is
paused (`runtime.collector`) before that import. ``python -m
pipeline.score`` does the same through `score`.
"""

import os
import sys
from typing import NoReturn


def score() -> NoReturn:
  """``ja-doc-score``: the scoring command, with warm workers started first
  (and the garbage collector paused while it imports).

  Stop signals are handled from the first line (`runtime.signals`), and the
  run's temporary files go to one folder of its own, removed at the end
  (`runtime.temp_dir`).
  """
  # pylint: disable=import-outside-toplevel
  from runtime import process_exit, signals
  signals.install()
  process_exit.run_command(_score)


def _score() -> int:
  """The scoring command's run, in its own temporary folder."""
  # pylint: disable=import-outside-toplevel
  from runtime import console, sdk_worker, signals, temp_dir
  from runtime.argv import flag_value
  # Local worker processes end with this one (`runtime.sdk_worker`).
  os.environ[sdk_worker.LAUNCHER_ENV] = str(os.getpid())
  command, status = None, None
  try:
    with temp_dir.run_temp_dir(remove_at_exit=True):
      from pipeline.local import warm_workers
      from runtime import collector
      try:
        warm_workers.start_early(sys.argv[1:])
        collector.pause()  # Until the job is built.
        from pipeline.cli import score as command
        status = command.main()
      finally:
        warm_workers.close_early()
        console.quiet_until_exit(sys.argv[1:])
    return status
  except signals.Interrupted as e:  # Outside the command's own handler.
    signals.handled()
    signals.stop_children()
    if status is not None:
      console.say(f'interrupted by {e.name} as the command ended; its work '
                  f'is done.')
    elif command is not None:
      return command.interrupted(e, flag_value(sys.argv[1:], 'output'))
    else:
      console.say(f'interrupted by {e.name} while starting; nothing was '
                  f'changed.')
    return e.exit_status


def train() -> NoReturn:
  """``ja-doc-train``: the training command."""
  from pipeline.cli import train as command  # pylint: disable=import-outside-toplevel
  command.cli()


def import_keras() -> NoReturn:
  """``ja-doc-import``: the import command."""
  from pipeline.cli import import_model as command  # pylint: disable=import-outside-toplevel
  command.cli()
