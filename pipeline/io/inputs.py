"""What an input pattern matches, and how large it is.

Why this module exists: the input check, the scaling plan and the progress
line all need the files a pattern matches and their total size. A filesystem
may report no size for a file (``size_in_bytes`` None); it then counts as 0
everywhere, never as an error.
"""

from typing import Any, Sequence

from apache_beam.io.filesystems import FileSystems


def match_inputs(pattern: str) -> list[Any]:
  """The ``FileMetadata`` of every file ``pattern`` matches.

  Raises:
    Exception: the filesystem's own error when the pattern cannot be listed.
  """
  return FileSystems.match([pattern])[0].metadata_list


def size_of(files: Sequence[Any]) -> int:
  """The total size of matched files; a size the filesystem does not report
  counts as 0."""
  return sum(m.size_in_bytes or 0 for m in files)


def input_bytes(pattern: str) -> int:
  """The total size of what ``pattern`` matches (0 where it cannot be
  listed or matches nothing)."""
  try:
    return size_of(match_inputs(pattern))
  except Exception:  # pylint: disable=broad-except
    return 0
