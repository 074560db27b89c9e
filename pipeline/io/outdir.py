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
* ``OUTDIR/scores-START-END-SSSSS-of-NNNNN.<ext>`` and
  ``OUTDIR/_errors-START-END-SSSSS-of-NNNNN.jsonl``: the windows of the
  watching command (``--watch``, `pipeline.cli.watch`), START and END in UTC
  (`window_names`). It adds windows to the folder and never sets anything
  aside. ``OUTDIR/_WATCHED.jsonl`` lists the files of its windows, one
  ``{"path", "window"}`` a line, added after each window's shards are in
  place, so that a later run into the same folder does not score them
  again (`watched_files`, `add_watched_files`).

`finish` is the end of every run: it removes the temporary folders, then
either drops the earlier outputs (success) or puts them back in place of any
shard the run wrote (failure). Nothing half-written stays under a final name.

`recover` is the start of every run: a run that was killed (SIGKILL, power
loss) had no chance to finish, and left ``_previous/``, ``beam-temp-*``
folders or a partial set of shards. While a run goes, ``_previous/`` holds
the last complete output, so it is put back in place of what the killed run
wrote. Marks in ``_previous/`` tell the moments apart where that would be
wrong: ``.setting_aside`` and ``.restoring`` (the earlier output was moving
in or out: the files in place are earlier ones too, so the rest joins them)
and ``.dropping`` (the run had succeeded and was deleting it: its own
output is complete, so ``_previous/`` goes).
"""

import json
import logging
import os
import re
import shutil
import time
from typing import Callable, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from model import storage

_LOGGER = logging.getLogger(__name__)

SCORES_PREFIX = 'scores'
ERRORS_PREFIX = '_errors'
SUMMARY_NAME = '_SUMMARY.json'
WATCHED_NAME = '_WATCHED.jsonl'
PREVIOUS = '_previous'
# Marks written into _previous/ while files move into it, before it is
# dropped, and before it is moved back.
_SETTING_ASIDE = '.setting_aside'
_DROPPING = '.dropping'
_RESTORING = '.restoring'
_MARKS = (_SETTING_ASIDE, _DROPPING, _RESTORING)
# Error shards of earlier versions of the command (``errors-*``) are outputs
# too: a rerun sets them aside and replaces them.
_OLD_ERRORS_PREFIX = 'errors'
OUTPUT_SHARDS = tuple(f'{p}-*-of-*' for p in (SCORES_PREFIX, ERRORS_PREFIX,
                                                _OLD_ERRORS_PREFIX))
OUTPUT_PATTERNS = OUTPUT_SHARDS + (SUMMARY_NAME,)
_SHARD = re.compile(r'(?P<prefix>.+)-(?P<i>\d+)-of-(?P<n>\d+)(\.\w+)*$')
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


def _previous_files(outdir: str) -> list[str]:
  """The outputs set aside in ``_previous/`` (its marks left out)."""
  return [p for p in _match(FileSystems.join(outdir, PREVIOUS, '*'))
          if FileSystems.split(p)[1] not in _MARKS]


def _mark(outdir: str, name: str) -> None:
  storage.write_bytes(FileSystems.join(outdir, PREVIOUS, name), b'')


def _has_mark(outdir: str, name: str) -> bool:
  return FileSystems.exists(FileSystems.join(outdir, PREVIOUS, name))


def _has_previous(outdir: str) -> bool:
  """Whether ``_previous/`` is there (on object stores: any file below)."""
  previous = FileSystems.join(outdir, PREVIOUS)
  return bool(FileSystems.exists(previous) or
              _match(FileSystems.join(previous, '*')))


def _remove_previous(outdir: str) -> None:
  """Deletes ``_previous/``: its files first, its marks last (a kill in
  between must still find the mark that says what was going on)."""
  files = _previous_files(outdir)
  if files:
    FileSystems.delete(files)
  if _has_previous(outdir):
    storage.remove_tree(FileSystems.join(outdir, PREVIOUS))


def recover(outdir: str) -> dict[str, int]:
  """Puts ``outdir`` back as a killed run should have left it (see the
  module docstring). Returns what was done, by what (empty: nothing was
  left behind): ``temporary_folders`` removed, ``restored`` earlier files
  put back, ``partial`` files of the killed run removed, ``dropped`` (the
  killed run had succeeded) or ``emptied`` (nothing was set aside yet)."""
  done: dict[str, int] = {}
  temp = remove_temporary_files(outdir)
  if temp:
    done['temporary_folders'] = temp
  if not _has_previous(outdir):
    partial = _partial_set(outdir)
    if partial:  # A run killed while it renamed, with no earlier output.
      FileSystems.delete(partial)
      done['partial'] = len(partial)
    return done
  earlier = _previous_files(outdir)
  dropping = _has_mark(outdir, _DROPPING)
  if not earlier or dropping:
    # Nothing was set aside yet, or all of it was deleted already, or the
    # killed run had succeeded: what is in place is the output.
    _remove_previous(outdir)
    done['dropped' if dropping else 'emptied'] = 1
    return done
  if not (_has_mark(outdir, _RESTORING) or _has_mark(outdir, _SETTING_ASIDE)):
    partial = output_files(outdir)
    if partial:
      FileSystems.delete(partial)
      done['partial'] = len(partial)
  _move(earlier, outdir)
  _remove_previous(outdir)
  done['restored'] = len(earlier)
  return done


def _partial_set(outdir: str) -> list[str]:
  """The output shards when some ``PREFIX-SSSSS-of-NNNNN`` set lacks a
  shard (a run killed while its sink renamed them), else none."""
  shards = [p for name in OUTPUT_SHARDS
            for p in _match(FileSystems.join(outdir, name))]
  sets: dict[tuple[str, int], set[int]] = {}
  for path in shards:
    match = _SHARD.match(FileSystems.split(path)[1])
    if match:
      sets.setdefault((match['prefix'], int(match['n'])), set()).add(
          int(match['i']))
  if any(found != set(range(n)) for (_, n), found in sets.items()):
    return shards
  return []


def set_aside_earlier_outputs(outdir: str) -> int:
  """Moves an earlier run's outputs to ``OUTDIR/_previous/`` (after
  `recover`). Returns how many files were moved."""
  current = output_files(outdir)
  if current:
    _mark(outdir, _SETTING_ASIDE)
    _move(current, FileSystems.join(outdir, PREVIOUS))
    FileSystems.delete([FileSystems.join(outdir, PREVIOUS, _SETTING_ASIDE)])
  return len(current)


def restore_earlier_outputs(outdir: str) -> None:
  """Puts the outputs set aside back, in place of any the run wrote."""
  stale = output_files(outdir)
  if stale:
    FileSystems.delete(stale)
  earlier = _previous_files(outdir)
  if earlier:
    _mark(outdir, _RESTORING)
  _move(earlier, outdir)
  _remove_previous(outdir)


def drop_earlier_outputs(outdir: str) -> None:
  """Deletes the outputs set aside (the run succeeded)."""
  if _previous_files(outdir):
    _mark(outdir, _DROPPING)
  _remove_previous(outdir)


def remove_temporary_files(outdir: str) -> int:
  """Deletes the ``beam-temp-*`` folders of this command's sinks; returns
  how many there were."""
  if is_local(outdir):
    try:
      names = [n for n in os.listdir(outdir) if n.startswith(TEMP_PREFIXES)]
    except OSError:
      return 0
    for name in names:
      shutil.rmtree(os.path.join(outdir, name), ignore_errors=True)
    return len(names)
  files = [p for prefix in TEMP_PREFIXES
           for p in _match(FileSystems.join(outdir, prefix + '*', '*'))]
  if files:
    FileSystems.delete(files)
  return len({FileSystems.split(p)[0] for p in files})


def remove_empty_jsonl(outdir: str, name: str = SCORES_PREFIX) -> None:
  """Deletes empty JSONL score shards (``NAME-*-of-*.jsonl``): pyarrow's JSON
  reader refuses empty files, and an empty shard holds nothing."""
  empty = [m.path for m in FileSystems.match([FileSystems.join(
      outdir, f'{name}-*-of-*.jsonl')])[0].metadata_list
           if not m.size_in_bytes]
  if empty:
    FileSystems.delete(empty)


def finish(outdir: str, *, succeeded: bool, output_format: str,
           complete: Optional[Callable[[], None]] = None) -> None:
  """Leaves ``outdir`` as a run must: this run's outputs when it
  ``succeeded``, else the earlier ones (or none), never a partial set and
  never a temporary folder.

  Args:
    outdir: the output folder.
    succeeded: whether the run succeeded.
    output_format: the scores' format.
    complete: on success, called once the outputs are in place and before
      the earlier ones are dropped (the summary is written there, so that a
      kill at any moment leaves a complete output or the earlier one).
  """
  remove_temporary_files(outdir)
  if succeeded:
    if output_format == 'jsonl':
      remove_empty_jsonl(outdir)
    if complete is not None:
      complete()
    drop_earlier_outputs(outdir)
  else:
    restore_earlier_outputs(outdir)
    _LOGGER.debug('Restored the earlier outputs of %s', outdir)


def _utc(secs: float) -> str:
  return time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(secs))


def window_names(start: float, end: float) -> tuple[str, str]:
  """The names of a watched window's score and error shards, before
  ``-SSSSS-of-NNNNN``: ``scores-START-END`` and ``_errors-START-END``, the
  window's bounds in UTC to the second (``20261205T200000Z``), so that the
  names sort by time."""
  part = f'{_utc(start)}-{_utc(end)}'
  return f'{SCORES_PREFIX}-{part}', f'{ERRORS_PREFIX}-{part}'


def named_shards(outdir: str, names: Sequence[str]) -> list[str]:
  """The paths of the shards ``NAME-*-of-*`` in ``outdir``, for each name."""
  return sorted(p for name in names
                for p in _match(FileSystems.join(outdir, f'{name}-*-of-*')))


def whole_shard_set(outdir: str, name: str) -> bool:
  """Whether ``outdir`` holds every shard ``NAME-SSSSS-of-NNNNN`` of one set
  (a sink renames its shards one by one: a stop may come in between)."""
  found: dict[int, set[int]] = {}
  for path in named_shards(outdir, [name]):
    match = _SHARD.match(FileSystems.split(path)[1])
    if match and match['prefix'] == name:
      found.setdefault(int(match['n']), set()).add(int(match['i']))
  return len(found) == 1 and all(
      shards == set(range(n)) for n, shards in found.items())


def remove_named_shards(outdir: str, names: Sequence[str]) -> int:
  """Deletes the shards ``NAME-*-of-*`` of ``names`` (a window a stop cut
  short, so that a window is whole or absent); returns how many."""
  paths = named_shards(outdir, names)
  if paths:
    FileSystems.delete(paths)
  return len(paths)


def watched_files(outdir: str) -> list[dict]:
  """The entries of ``OUTDIR/_WATCHED.jsonl`` (none if it is not there); a
  last line cut short by a kill is left out."""
  path = FileSystems.join(outdir, WATCHED_NAME)
  if not FileSystems.exists(path):
    return []
  entries = []
  for line in storage.read_bytes(path).decode('utf-8').splitlines():
    try:
      entries.append(json.loads(line))
    except ValueError:
      _LOGGER.debug('Skipped a cut line of %s: %r', path, line)
  return entries


def add_watched_files(outdir: str, paths: Sequence[str], window: str) -> None:
  """Adds ``paths``, scored in ``window``, to ``OUTDIR/_WATCHED.jsonl``:
  appended on this machine's disk; elsewhere (object stores cannot append)
  the whole list is written under a temporary name and renamed over it."""
  lines = ''.join(json.dumps({'path': p, 'window': window},
                             ensure_ascii=False) + '\n' for p in paths)
  path = FileSystems.join(outdir, WATCHED_NAME)
  if is_local(path):
    os.makedirs(outdir, exist_ok=True)
    with open(path, 'a+b') as f:
      if f.tell():  # After a line a kill cut short, on a line of its own.
        f.seek(f.tell() - 1)
        if f.read(1) != b'\n':
          lines = '\n' + lines
      f.write(lines.encode('utf-8'))
      f.flush()
      os.fsync(f.fileno())
    return
  text = (storage.read_bytes(path).decode('utf-8')
          if FileSystems.exists(path) else '')
  part = FileSystems.join(outdir, f'.{WATCHED_NAME}.part')
  storage.write_bytes(part, (text + lines).encode('utf-8'))
  if FileSystems.exists(path):
    FileSystems.delete([path])
  FileSystems.rename([part], [path])
