"""Reads a flag from a command line before the command parses it.

Why this module exists: a command sets up its console (``--log_level``) and
starts its warm worker processes (``--model``, ``--input``, the runner's
flags) before Beam is imported and before Beam's options can be parsed.
These are the only reads of a command line that do not go through a parser;
they follow argparse's spellings (``--name value`` and ``--name=value``,
the last one given wins). Standard library only.
"""

from typing import Optional, Sequence


def flag_value(argv: Sequence[str], name: str) -> Optional[str]:
  """The last value given to ``--name`` in ``argv`` (None: not given)."""
  value = None
  for i, arg in enumerate(argv):
    if arg == f'--{name}' and i + 1 < len(argv):
      value = argv[i + 1]
    elif arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
  return value


def flag_given(argv: Sequence[str], *names: str) -> bool:
  """Whether any of ``--name`` (with or without a value) is in ``argv``."""
  return any(arg == f'--{n}' or arg.startswith(f'--{n}=') for arg in argv
             for n in names)
