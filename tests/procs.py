"""Processes in tests, through psutil: a parent, whether one runs, a tree."""

import psutil


def parent(pid: int) -> int:
  """The parent pid of ``pid``; 0 where it cannot be read (it is gone)."""
  try:
    return psutil.Process(pid).ppid()
  except psutil.NoSuchProcess:
    return 0


def alive(pid: int) -> bool:
  """Whether ``pid`` runs: it exists and is neither a zombie nor dead."""
  try:
    return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE,
                                                psutil.STATUS_DEAD)
  except psutil.NoSuchProcess:
    return False


def tree(root: int) -> list[tuple[int, int, list[bytes]]]:
  """``(pid, parent pid, command line)`` of every process below ``root``."""
  try:
    below = psutil.Process(root).children(recursive=True)
  except psutil.NoSuchProcess:
    return []
  found = []
  for process in below:
    try:
      found.append((process.pid, process.ppid(),
                    [arg.encode() for arg in process.cmdline()]))
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
      pass  # It exited meanwhile.
  return found


def children(pid: int) -> list[int]:
  """The pids of the direct children of ``pid``."""
  try:
    return [p.pid for p in psutil.Process(pid).children()]
  except psutil.NoSuchProcess:
    return []


def environ(pid: int) -> dict[str, str]:
  """The environment ``pid`` started with."""
  return psutil.Process(pid).environ()
