"""The output folder: its file names, and the one way a run leaves it.

Why this module exists: every name the scoring command writes, looks for or
cleans up, and every move of an earlier run's outputs, is decided here, so
that a failed run is cleaned up one way only.

* ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>``, ``OUTDIR/_errors-SSSSS-of-NNNNN.jsonl``
  and ``OUTDIR/_SUMMARY.json``: the outputs. Names that start with ``_``
  (or ``.``) are skipped by dataset readers (pyarrow, pandas, Spark).
* ``OUTDIR/_previous/``: an earlier run's outputs while a rerun goes
  (`set_aside_earlier_outputs`).
* ``OUTDIR/beam-temp-*``: Beam's file sinks write there and rename when done.

`finish` is the end of every run: it removes the temporary folders, then
either drops the earlier outputs (success) or puts them back in place of any
shard the run wrote (failure). Nothing half-written stays under a final name.
"""

import logging
import os
import shutil
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from model import storage

_LOGGER = logging.getLogger(__name__)

SCORES_PREFIX = 'scores'
ERRORS_PREFIX = '_errors'
SUMMARY_NAME = '_SUMMARY.json'
PREVIOUS = '_previous'
# Error shards of earlier versions of the command (``errors-*``) are outputs
# too: a rerun sets them aside and replaces them.
_OLD_ERRORS_PREFIX = 'errors'
OUTPUT_SHARDS = tuple(f'{p}-*-of-*' for p in (SCORES_PREFIX, ERRORS_PREFIX,
                                                _OLD_ERRORS_PREFIX))
OUTPUT_PATTERNS = OUTPUT_SHARDS + (SUMMARY_NAME,)
TEMP_PREFIXES = tuple(f'beam-temp-{p}-' for p in (
    SCORES_PREFIX, ERRORS_PREFIX, _OLD_ERRORS_PREFIX))


def is_local(path: str) -> bool:
  """Whether ``path`` is on the local filesystem (no ``scheme://``)."""
  return '://' not in path


def _match(pattern: str) -> list[str]:
  try:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
  except Exception:  # pylint: disable=broad-except
    return []


def output_files(outdir: str) -> list[str]:
  """The outputs of a run (this command's names) in ``outdir``."""
  return sorted({p for name in OUTPUT_PATTERNS
                 for p in _match(FileSystems.join(outdir, name))})


def shard_names(outdir: str, prefix: str) -> list[str]:
  """The names of the shards ``PREFIX-*-of-*`` in ``outdir``, sorted."""
  return sorted(FileSystems.split(p)[1] for p in _match(
      FileSystems.join(outdir, f'{prefix}-*-of-*')))


def _move(paths: Sequence[str], directory: str) -> None:
  if not paths:
    return
  if is_local(directory):
    os.makedirs(directory, exist_ok=True)
  FileSystems.rename(list(paths), [
      FileSystems.join(directory, FileSystems.split(p)[1]) for p in paths])


def set_aside_earlier_outputs(outdir: str) -> int:
  """Moves an earlier run's outputs to ``OUTDIR/_previous/``.

  Files already there (a run that was killed) stay there unless newer
  outputs replace them. Returns how many files were moved.
  """
  previous = FileSystems.join(outdir, PREVIOUS)
  current = output_files(outdir)
  if current and _match(FileSystems.join(previous, '*')):
    storage.remove_tree(previous)
  _move(current, previous)
  return len(current)


def restore_earlier_outputs(outdir: str) -> None:
  """Puts the outputs set aside back, in place of any the run wrote."""
  previous = FileSystems.join(outdir, PREVIOUS)
  stale = output_files(outdir)
  if stale:
    FileSystems.delete(stale)
  _move(_match(FileSystems.join(previous, '*')), outdir)
  if FileSystems.exists(previous):
    storage.remove_tree(previous)


def drop_earlier_outputs(outdir: str) -> None:
  """Deletes the outputs set aside (the run succeeded)."""
  previous = FileSystems.join(outdir, PREVIOUS)
  if FileSystems.exists(previous) or _match(FileSystems.join(previous, '*')):
    storage.remove_tree(previous)


def remove_temporary_files(outdir: str) -> None:
  """Deletes the ``beam-temp-*`` folders of this command's sinks."""
  if is_local(outdir):
    try:
      names = os.listdir(outdir)
    except OSError:
      return
    for name in names:
      if name.startswith(TEMP_PREFIXES):
        shutil.rmtree(os.path.join(outdir, name), ignore_errors=True)
    return
  files = [p for prefix in TEMP_PREFIXES
           for p in _match(FileSystems.join(outdir, prefix + '*', '*'))]
  if files:
    FileSystems.delete(files)


def remove_empty_jsonl(outdir: str) -> None:
  """Deletes empty JSONL score shards: pyarrow's JSON reader refuses empty
  files, and an empty shard holds nothing."""
  empty = [m.path for m in FileSystems.match([FileSystems.join(
      outdir, f'{SCORES_PREFIX}-*-of-*.jsonl')])[0].metadata_list
           if not m.size_in_bytes]
  if empty:
    FileSystems.delete(empty)


def finish(outdir: str, *, succeeded: bool, output_format: str) -> None:
  """Leaves ``outdir`` as a run must: this run's outputs when it
  ``succeeded``, else the earlier ones (or none), never a partial set and
  never a temporary folder."""
  remove_temporary_files(outdir)
  if succeeded:
    drop_earlier_outputs(outdir)
    if output_format == 'jsonl':
      remove_empty_jsonl(outdir)
  else:
    restore_earlier_outputs(outdir)
    _LOGGER.debug('Restored the earlier outputs of %s', outdir)
