"""Strict command lines: every default shown, a typo answered with the near
option, Beam's pipeline options accepted beside the command's own.

Why this module exists: argparse neither suggests a near option nor shows
every default, and Beam's options are parsed apart from a command's own
(`PipelineOptions`). The three commands (``pipeline.score``,
``pipeline.train``, ``pipeline.import_keras``) share these rules, so that an
option means the same and fails the same way in each.
"""

import argparse
import contextlib
import difflib
import io
import os
import re
import sys
from typing import Any, Iterable, Sequence

from runtime.console import DEFAULT_LOG_LEVEL, LOG_LEVELS


def shown_default(default: Any) -> str:
  """A default as ``--help`` prints it: text that is empty, or has white
  space other than single spaces between words, as its Python literal."""
  if default is None:
    return 'none'
  if isinstance(default, str) and (
      not default.strip() or default != default.strip() or
      any(c.isspace() and c != ' ' for c in default)):
    return repr(default)
  if isinstance(default, (list, tuple)):
    return ','.join(map(str, default))
  return str(default)


class StrictArgumentParser(argparse.ArgumentParser):
  """An ArgumentParser that names the closest valid option on a typo.

  Abbreviations are off (``--form`` is not ``--format``): the options are
  also parsed by Beam, which does not expand them. Every option's help ends
  with its default, where it takes a value (``none`` where it has none).

  Args:
    extra_options: option strings accepted besides this parser's own (Beam's
      pipeline options), used for suggestions.
  """
  def __init__(self, *args, extra_options: Iterable[str] = (), **kwargs):
    kwargs.setdefault('allow_abbrev', False)
    # Before argparse's __init__, which adds --help. Not ``_defaults``:
    # argparse keeps set_defaults() there and copies it into every parse's
    # namespace (which put ``--input: None`` and the like into _SUMMARY.json).
    self._names: set[str] = set()
    self._option_defaults: dict[str, Any] = {}
    super().__init__(*args, **kwargs)
    self.extra_options = set(extra_options)

  def add_argument(self, *args, **kwargs):
    """As argparse's, and the option's default goes into its help."""
    action = super().add_argument(*args, **kwargs)
    self._names.update(action.option_strings)
    takes_value = action.nargs != 0
    if takes_value and action.option_strings:
      self._option_defaults[action.option_strings[-1]] = action.default
    if (action.help not in (None, argparse.SUPPRESS) and takes_value and
        action.option_strings and not action.required and
        '(required)' not in action.help):
      text = shown_default(action.default)
      action.help += f' (default: {text.replace("%", "%%")})'
    return action

  def option_defaults(self) -> dict[str, Any]:
    """``{option: default}`` of this parser's options that take a value."""
    return dict(self._option_defaults)

  def option_names(self) -> set[str]:
    """Every option string this parser and ``extra_options`` accept."""
    return self._names | self.extra_options

  def parse_args(self, args=None, namespace=None):
    parsed, unknown = self.parse_known_args(args, namespace)
    if unknown:
      self.reject_unknown(unknown)
    return parsed

  def error(self, message: str):
    """One line and the hint to ``--help`` instead of the whole usage."""
    self.exit(2, f'{self.prog}: error: {message}\n'
              f'Run {self.prog} --help for the options.\n')

  def reject_unknown(self, unknown: Sequence[str]) -> None:
    """Exits with status 2, naming the first unknown argument."""
    self.error(unknown_argument_message(unknown, self.option_names()))


def prog_name(module_command: str) -> str:
  """The console script's name when run as one (``ja-doc-...``), else
  ``module_command`` (``python -m ...``)."""
  script = os.path.basename(sys.argv[0]) if sys.argv else ''
  return script if script.startswith('ja-doc-') else module_command


def unknown_argument_message(unknown: Sequence[str],
                             valid: Iterable[str]) -> str:
  """``unrecognized option --x (did you mean --y?)`` for the first unknown."""
  options = [u for u in unknown if u.startswith('-') and u != '--']
  if not options:
    return f'unexpected argument {unknown[0]!r}'
  name = options[0].split('=', 1)[0]
  valid = sorted(set(valid))
  message = f'unrecognized option {name}'
  normalized = '--' + name.lstrip('-').replace('-', '_')
  if normalized in valid:
    guess = [normalized]
  else:
    guess = difflib.get_close_matches(normalized, valid, n=1, cutoff=0.6)
  if guess:
    message += f' (did you mean {guess[0]}?)'
  return message


_PROBE = '__ja_doc_scorer_probe__'
# A value such as ``-1``, which argparse reads as a value, not an option.
_NEGATIVE_NUMBER = re.compile(r'-\d+(\.\d*)?|-\.\d+')


def _beam_knows(option: str) -> bool:
  """Whether Beam's pipeline options know the option string ``option`` as
  spelled (``--num-shards`` is not ``--num_shards``).

  Asked through Beam's public parsing: given ``option=PROBE``, a known
  option either takes the probe as its value or refuses it (a flag, a
  number, a choice: argparse exits), and an unknown one is set aside.
  """
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import PipelineOptions
  try:
    with contextlib.redirect_stderr(io.StringIO()):
      values = PipelineOptions([f'{option}={_PROBE}']).get_all_options()
  except SystemExit:
    return True
  return any(v == _PROBE or (isinstance(v, list) and _PROBE in v)
             for v in values.values())


def check_beam_options(parser: StrictArgumentParser,
                       rest: Sequence[str]) -> None:
  """Exits through ``parser`` (status 2) unless Beam knows every argument in
  ``rest``, those the command's own parser left.

  Uses Beam's public parsing only (`_beam_knows`); a bad value is Beam's own
  argparse error, shown as the command's one line. A bare word that follows
  no option is unexpected.
  """
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import PipelineOptions
  stray = [arg for i, arg in enumerate(rest) if not arg.startswith('-') and (
      i == 0 or not rest[i - 1].startswith('-') or '=' in rest[i - 1])]
  if stray:
    parser.reject_unknown(stray)
  names = dict.fromkeys(arg.split('=', 1)[0] for arg in rest
                        if arg.startswith('-') and arg != '--' and
                        not _NEGATIVE_NUMBER.fullmatch(arg))
  unknown = [name for name in names if not _beam_knows(name)]
  if unknown:
    parser.extra_options = {
        f'--{name}' for name in PipelineOptions([]).get_all_options()}
    parser.reject_unknown(unknown)
  captured = io.StringIO()
  try:
    with contextlib.redirect_stderr(captured):
      PipelineOptions(list(rest)).get_all_options()
  except SystemExit:
    lines = [line for line in captured.getvalue().splitlines() if line]
    message = lines[-1] if lines else 'invalid Beam pipeline option'
    parser.error(message.split(': error: ', 1)[-1])


def non_negative_int(text: str) -> int:
  """argparse type: an integer >= 0."""
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be 0 or more; received {text}')
  return value


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be 1 or more; received {text}')
  return value


def non_negative_float(text: str) -> float:
  """argparse type: a number >= 0."""
  value = float(text)
  if not value >= 0:
    raise argparse.ArgumentTypeError(f'must be 0 or more; received {text}')
  return value


def positive_float(text: str) -> float:
  """argparse type: a number > 0."""
  value = float(text)
  if not 0 < value < float('inf'):
    raise argparse.ArgumentTypeError(f'must be more than 0; received {text}')
  return value


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      '--log_level', default=DEFAULT_LOG_LEVEL, choices=LOG_LEVELS,
      type=str.upper,
      help='messages of Beam, TensorFlow and other libraries to show; the '
      'command\'s own lines always show, and below ERROR the start-up notices '
      'are no longer filtered')

