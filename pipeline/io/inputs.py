"""What an input pattern matches, which of it is input, and how large it is.

Why this module exists: the input check, the readers, the kept fields'
column sampling and the scaling plan all need the files a pattern matches;
they must agree on which of them are input.

* **Outputs are never input.** A name that a wildcard of the pattern matched
  and that starts with ``_`` or ``.`` is skipped, file or folder: the
  Hadoop and Spark convention, which this command's own outputs follow
  (``_errors-*``, ``_SUMMARY.json``, ``_previous/``). A path written out in
  the pattern itself (``data/_raw/*.jsonl``) is taken as given. Nothing
  under the run's own output folder is read, whatever its name
  (``--input 'data/**' --output data/scored``).
* **Sizes.** A filesystem may report no size for a file (``size_in_bytes``
  None); it then counts as 0 everywhere, never as an error.
"""

import os
import re
from typing import Any, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

# What Beam's match takes as the fixed start of a pattern.
_FIXED_PREFIX = re.compile(r'^[^[*?]*')
SKIPPED_STARTS = ('_', '.')


def _fixed_directory(pattern: str) -> Optional[str]:
  """The folder a pattern's wildcards start in (``data/`` for
  ``data/**``); None for a pattern without wildcards."""
  prefix = _FIXED_PREFIX.match(pattern).group(0)
  if prefix == pattern:
    return None
  return prefix[:prefix.rfind('/') + 1]


def _is_local(path: str) -> bool:
  return '://' not in path or path.startswith('file://')


def _local(path: str) -> str:
  return os.path.abspath(path[len('file://'):] if path.startswith('file://')
                         else path)


def is_under(path: str, folder: str) -> bool:
  """Whether ``path`` is ``folder`` or lies below it."""
  if _is_local(path) and _is_local(folder):
    path, folder = _local(path), _local(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
  folder = folder.rstrip('/')
  return path == folder or path.startswith(folder + '/')


def is_input(path: str, pattern: str, outdir: Optional[str] = None) -> bool:
  """Whether a file ``pattern`` matched is input (see the module docstring).

  Args:
    path: the matched file.
    pattern: the input pattern.
    outdir: the run's output folder, if any.
  """
  if outdir and is_under(path, outdir):
    return False
  base = _fixed_directory(pattern)
  if base is None:
    return True
  if _is_local(path) and _is_local(base):
    rel = os.path.relpath(_local(path), _local(base or '.'))
    if rel.startswith('..'):  # Not below the pattern's folder after all.
      rel = os.path.basename(path)
  elif path.startswith(base):
    rel = path[len(base):]
  else:
    rel = path.rsplit('/', 1)[-1]
  return not any(part.startswith(SKIPPED_STARTS)
                 for part in re.split(r'[/\\]', rel) if part)


def match_all(pattern: str) -> list[Any]:
  """The ``FileMetadata`` of every file ``pattern`` matches, outputs
  included.

  Raises:
    Exception: the filesystem's own error when the pattern cannot be listed.
  """
  return FileSystems.match([pattern])[0].metadata_list


def select(files: Sequence[Any], pattern: str,
           outdir: Optional[str] = None) -> list[Any]:
  """The matched files that are input (`is_input`)."""
  return [m for m in files if is_input(m.path, pattern, outdir)]


def match_inputs(pattern: str, outdir: Optional[str] = None) -> list[Any]:
  """The ``FileMetadata`` of the input files ``pattern`` matches.

  Raises:
    Exception: the filesystem's own error when the pattern cannot be listed.
  """
  return select(match_all(pattern), pattern, outdir)


def size_of(files: Sequence[Any]) -> int:
  """The total size of matched files; a size the filesystem does not report
  counts as 0."""
  return sum(m.size_in_bytes or 0 for m in files)


def input_bytes(pattern: str, outdir: Optional[str] = None) -> int:
  """The total size of the input ``pattern`` matches (0 where it cannot be
  listed or matches nothing)."""
  try:
    return size_of(match_inputs(pattern, outdir))
  except Exception:  # pylint: disable=broad-except
    return 0
