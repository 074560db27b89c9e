"""Reading processes from ``/proc`` in tests: a parent, whether one runs."""


def parent(pid: int) -> int:
  """The parent pid of ``pid``; 0 where it cannot be read (it is gone)."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      return int(f.read().rsplit(b')', 1)[1].split()[1])
  except (OSError, IndexError, ValueError):
    return 0


def alive(pid: int) -> bool:
  """Whether ``pid`` runs: it exists and is neither a zombie nor dead."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      return f.read().rsplit(b')', 1)[1].split()[0] not in (b'Z', b'X')
  except OSError:
    return False
