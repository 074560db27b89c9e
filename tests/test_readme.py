"""The README and docs/ say what the code does.

* The three synopses in README.md (``python -m pipeline.score``,
  ``pipeline.train``, ``pipeline.import_keras``) name every option of the
  command's parser, and no other, with the parser's defaults and choices.
* Every shell command in README.md and docs/*.md that runs this
  repository's code (``python -m pipeline.``, ``model.``, ``bench.``,
  ``python examples/``) names a module that exists and options it accepts:
  the commands with an in-process parser parse the command line with it;
  every such module's ``--help`` exits 0 (slow: a process each).
* The README's two set-up commands are the ones CI and users rely on.
* Relative links between the documents resolve, headings included, and the
  README links every file under docs/.
* No committed document or benchmark result names an absolute path of the
  machine that wrote it.

Synopsis conventions (the README states them above the synopses):

* ``[--flag]``: an option that takes no value.
* ``[--name VALUE]``: an option with a value; VALUE is the parser's default
  as ``str(default)``. A default that holds blanks or control characters is
  written as a single-quoted Python string literal (``[--split ' ']``). A
  default of None is written as an upper-case placeholder (``[--num_words
  N]``, ``[--keep_fields A,B]``): "no default".
* ``[--name a|b|c]``: an option with choices; the items are the parser's
  choices, the default first.
* ``--name PLACEHOLDER`` without brackets: a required option (one the
  command refuses to run without); PLACEHOLDER is upper-case.
* ``[any Beam pipeline option]``: last, in the scoring synopsis only.
"""

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Callable, Iterator, Optional

import pytest

from tests.conftest import ROOT

README = ROOT / 'README.md'
DOCS = sorted((ROOT / 'docs').glob('*.md'))
DOCUMENTS = [README] + DOCS

SYNOPSIS_COMMANDS = ('pipeline.score', 'pipeline.train', 'pipeline.import_keras')
BEAM_TAIL = 'any Beam pipeline option'
PLACEHOLDER = re.compile(r'[A-Z][A-Z0-9_,]*')

FIRST_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e . && '
    'python -m pipeline.train --train examples/corpus.jsonl --out '
    'bundles/example --epochs 30 --overwrite && python -m pipeline.score '
    '--input examples/corpus.jsonl --model bundles/example --output '
    'out/example --num_shards 2 && head -n 3 '
    'out/example/scores-00000-of-00002.jsonl')
TEST_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e "
    "'.[test,bench]' && python -m pytest -q tests")
FAST_TIER_COMMAND = 'python -m pytest -q -m "not slow and not cluster" tests'

# Paths of the machine that wrote a file; never in committed text.
MACHINE_PATH = re.compile(r'/(?:work|tmp|root|home)/')


# --- Reading the Markdown ---------------------------------------------------


def _code_blocks(text: str) -> Iterator[tuple[str, list[str]]]:
  """``(info, lines)`` of each fenced block (info: the fence's language) and
  each indented block (info ``'indented'``), as Markdown reads them: an
  indented block starts after a blank line and cannot interrupt a
  paragraph."""
  lines = text.splitlines()
  i, previous_blank = 0, True
  while i < len(lines):
    line = lines[i]
    fence = re.match(r' {0,3}(```+|~~~+)\s*([\w-]*)', line)
    if fence:
      marker, info = fence.group(1), fence.group(2)
      body = []
      i += 1
      while i < len(lines) and not lines[i].lstrip().startswith(marker):
        body.append(lines[i])
        i += 1
      yield info, body
      i += 1
      previous_blank = False
      continue
    if previous_blank and line.startswith('    ') and line.strip():
      body = []
      while i < len(lines) and (lines[i].startswith('    ') or
                                not lines[i].strip()):
        body.append(lines[i][4:])
        i += 1
      while body and not body[-1].strip():
        body.pop()
      yield 'indented', body
      previous_blank = True
      continue
    previous_blank = not line.strip()
    i += 1


def _logical_lines(body: list[str]) -> Iterator[str]:
  """The block's lines with ``\\`` continuations joined."""
  current = ''
  for line in body:
    if line.rstrip().endswith('\\'):
      current += line.rstrip()[:-1] + ' '
      continue
    yield (current + line).strip()
    current = ''
  if current.strip():
    yield current.strip()


def _is_synopsis(line: str) -> bool:
  return line.startswith('python -m pipeline.') and '[--' in line


def _shell_lines(path) -> Iterator[str]:
  """Every logical line of the shell blocks of ``path``, synopses left
  out."""
  for info, body in _code_blocks(path.read_text(encoding='utf-8')):
    if info not in ('', 'indented', 'sh', 'bash', 'shell', 'console'):
      continue  # python, json, ...
    for line in _logical_lines(body):
      if line and not line.startswith('#') and not _is_synopsis(line):
        yield line


def _synopses() -> dict[str, list[str]]:
  """``{command: [synopsis text, ...]}`` of README.md's synopses."""
  found: dict[str, list[str]] = {}
  for info, body in _code_blocks(README.read_text(encoding='utf-8')):
    if info != 'indented':
      continue
    for line in _logical_lines(body):
      if _is_synopsis(line):
        command = line.split()[2]
        found.setdefault(command, []).append(line)
  return found


# --- Synopses ---------------------------------------------------------------


class Item:
  """One item of a synopsis: an option (with its value, if any, and whether
  it is bracketed), or the free text of a bracketed non-option."""
  def __init__(self, name: str, value: Optional[str], optional: bool,
               literal: bool = False):
    self.name, self.value, self.optional = name, value, optional
    self.literal = literal  # the value is a quoted Python string literal

  def __repr__(self):
    return f'Item({self.name!r}, {self.value!r}, optional={self.optional})'


def _read_value(text: str, i: int, closing: str) -> tuple[str, bool, int]:
  """The value that starts at ``text[i]`` and ends before ``closing`` (a
  bracket or a blank): a single-quoted Python literal, or plain text.
  Returns ``(value, literal, index after it)``."""
  if text[i] == "'":
    for end in range(i + 1, len(text)):
      if text[end] == "'" and (end + 1 == len(text) or
                               text[end + 1] in closing):
        try:
          ast.literal_eval(text[i:end + 1])
        except (SyntaxError, ValueError):
          continue
        return text[i:end + 1], True, end + 1
    raise AssertionError(f'unterminated quoted value: {text[i:]!r}')
  end = i
  while end < len(text) and text[end] not in closing:
    end += 1
  return text[i:end], False, end


def parse_synopsis(text: str) -> list[Item]:
  """The items of one synopsis (its first three words are the command)."""
  words = text.split(None, 3)
  rest = words[3] if len(words) > 3 else ''
  items, i = [], 0
  while i < len(rest):
    if rest[i].isspace():
      i += 1
      continue
    if rest.startswith('[--', i):
      name = re.match(r'--[\w-]+', rest[i + 1:]).group(0)
      i += 1 + len(name)
      if rest[i] == ']':
        items.append(Item(name, None, optional=True))
        i += 1
        continue
      assert rest[i] == ' ', f'bad synopsis item at {rest[i - 20:i + 20]!r}'
      value, literal, i = _read_value(rest, i + 1, ']')
      assert rest[i] == ']', f'bad synopsis item at {rest[i - 20:i + 20]!r}'
      items.append(Item(name, value, optional=True, literal=literal))
      i += 1
    elif rest[i] == '[':
      end = rest.index(']', i)
      items.append(Item(rest[i + 1:end], None, optional=True))
      i = end + 1
    elif rest.startswith('--', i):
      name = re.match(r'--[\w-]+', rest[i:]).group(0)
      i += len(name)
      assert rest[i] == ' ', f'{name} without a value outside brackets'
      value, literal, i = _read_value(rest, i + 1, ' ')
      items.append(Item(name, value, optional=False, literal=literal))
    else:
      raise AssertionError(f'cannot read the synopsis at {rest[i:i + 40]!r}')
  return items


def _normal(option: str) -> str:
  """``--mecab-args`` and ``--mecab_args`` are one option."""
  return '--' + option[2:].replace('-', '_')


def _score_parse(argv):
  from pipeline.cli import options  # pylint: disable=import-outside-toplevel
  return options.parse_args(argv)


def _train_parse(argv):
  from pipeline.cli import train  # pylint: disable=import-outside-toplevel
  return train.build_parser().parse_args(argv)


def _import_parse(argv):
  from pipeline.cli import import_model  # pylint: disable=import-outside-toplevel
  return import_model.build_parser().parse_args(argv)


def _parser(command: str):
  # pylint: disable=import-outside-toplevel
  from pipeline.cli import import_model, options, train
  return {'pipeline.score': options.build_parser,
          'pipeline.train': train.build_parser,
          'pipeline.import_keras': import_model.build_parser}[command]()


PARSE = {'pipeline.score': _score_parse, 'pipeline.train': _train_parse,
         'pipeline.import_keras': _import_parse}


def _exit_message(parse: Callable, argv: list[str]) -> Optional[str]:
  """What ``parse(argv)`` printed when it exited (argparse), else None."""
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      parse(argv)
  except SystemExit:
    return err.getvalue().strip() or '(exited with no message)'
  return None


def _actions(parser) -> dict[str, argparse.Action]:
  """``{option string: action}``. argparse has no public way to read an
  option's choices; ``_actions`` has been there since argparse began, and
  this test fails loudly if it goes."""
  return {s: a for a in parser._actions for s in a.option_strings}  # pylint: disable=protected-access


def _value_problem(item: Item, action: argparse.Action, default) -> Optional[str]:
  """Why ``item``'s value does not show ``action``'s default, or None."""
  shown = item.value
  if action.choices is not None:
    listed = shown.split('|')
    if listed[0] != str(default):
      return f'{item.name}: the first choice {listed[0]!r} is not the ' \
             f'default {default!r}'
    if sorted(listed) != sorted(map(str, action.choices)):
      return f'{item.name}: choices {listed} are not the parser\'s ' \
             f'{list(action.choices)}'
    return None
  if default is None:
    if not PLACEHOLDER.fullmatch(shown):
      return f'{item.name}: no default, so write an upper-case placeholder, ' \
             f'not {shown!r}'
    return None
  if item.literal:
    if ast.literal_eval(shown) != default:
      return f'{item.name}: {shown} is not the default {default!r}'
    return None
  if shown != str(default):
    return f'{item.name}: {shown!r} is not the default {str(default)!r}'
  return None


def test_the_readme_has_one_synopsis_per_command():
  synopses = _synopses()
  for command in SYNOPSIS_COMMANDS:
    assert len(synopses.get(command, [])) == 1, (
        f'README.md needs exactly one synopsis of python -m {command} '
        f'(an indented block with [--options]); found '
        f'{len(synopses.get(command, []))}')


@pytest.mark.parametrize('command', SYNOPSIS_COMMANDS)
def test_synopsis_names_every_option_with_its_default(command):
  text, = _synopses()[command]
  items = parse_synopsis(text)
  parser = _parser(command)
  names = parser.option_names() - {'-h', '--help'}
  defaults = {_normal(k): v for k, v in parser.option_defaults().items()}
  actions = _actions(parser)

  free = [item for item in items if not item.name.startswith('--')]
  if command == 'pipeline.score':
    assert [item.name for item in free] == [BEAM_TAIL], free
    assert items[-1].name == BEAM_TAIL, 'Beam\'s options come last'
  else:
    assert not free, free
  options = [item for item in items if item.name.startswith('--')]

  shown = [_normal(item.name) for item in options]
  assert len(shown) == len(set(shown)), f'an option is shown twice: {shown}'
  for item in options:
    assert item.name in names, f'{item.name} is no option of {command}'
  assert set(shown) == {_normal(n) for n in names}, (
      f'missing from the synopsis: '
      f'{sorted({_normal(n) for n in names} - set(shown))}; '
      f'unknown: {sorted(set(shown) - {_normal(n) for n in names})}')

  problems = []
  for item in options:
    key = _normal(item.name)
    if key not in defaults:  # a flag
      if item.value is not None:
        problems.append(f'{item.name} takes no value; write [{item.name}]')
      continue
    if item.value is None:
      problems.append(f'{item.name} takes a value; write [{item.name} '
                      f'DEFAULT]')
      continue
    if not item.optional:
      if not PLACEHOLDER.fullmatch(item.value):
        problems.append(f'{item.name} is required: its value is an '
                        f'upper-case placeholder, not {item.value!r}')
      continue
    problem = _value_problem(item, actions[item.name], defaults[key])
    if problem:
      problems.append(problem)
  assert not problems, '\n'.join(problems)

  # Unbracketed exactly where the command refuses to run without the
  # option: the parser's own message on an empty command line names them.
  message = _exit_message(PARSE[command], [])
  assert message and 'required' in message, message
  required = set(re.findall(r'--[\w-]+', message.split('required:', 1)[1]
                            .splitlines()[0]))
  unbracketed = {item.name for item in options if not item.optional}
  assert unbracketed == required, (
      f'required by {command}: {sorted(required)}; shown without brackets: '
      f'{sorted(unbracketed)}')


def test_the_synopsis_reader_catches_drift():
  """The rules above can fail: a wrong default, a missing choice, a stray
  option."""
  items = parse_synopsis(
      "python -m pipeline.train --train DATA [--dropout 0.2] "
      "[--filters '[\\\\]\\t'] [--padding post|pre] [--overwrite]")
  assert [(i.name, i.value, i.optional) for i in items] == [
      ('--train', 'DATA', False), ('--dropout', '0.2', True),
      ('--filters', "'[\\\\]\\t'", True), ('--padding', 'post|pre', True),
      ('--overwrite', None, True)]
  actions = _actions(_parser('pipeline.train'))
  assert _value_problem(items[1], actions['--dropout'], 0.0)
  assert _value_problem(items[2], actions['--filters'], '[\\]\t') is None
  assert _value_problem(items[3], actions['--padding'], 'pre')


# --- Commands in the documents ----------------------------------------------


def _commands() -> list[tuple[str, str, list[str]]]:
  """``(document, target, argv)`` of every command in the documents' shell
  blocks that runs this repository's code; ``target`` is a module
  (``pipeline.score``) or a script path (``examples/etl_filter.py``)."""
  found = []
  for path in DOCUMENTS:
    for line in _shell_lines(path):
      if not re.search(r'\bpython3? ', line):
        continue  # not a command that could run this repository's code
      lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
      lexer.whitespace_split = True
      try:
        words, command = list(lexer), []
      except ValueError:  # unbalanced quotes
        found.append((path.relative_to(ROOT).as_posix(), UNREADABLE, [line]))
        continue
      for word in words + [';']:
        if word and set(word) <= set('&|;()<>'):
          target = _target(command)
          if target:
            found.append((path.relative_to(ROOT).as_posix(), target[0],
                          target[1]))
          command = []
        else:
          command.append(word)
  return found


UNREADABLE = '(a shell line shlex cannot read)'


def _target(words: list[str]) -> Optional[tuple[str, list[str]]]:
  """``(target, argv)`` if ``words`` run this repository's code."""
  if not words or words[0] not in ('python', 'python3'):
    return None
  if len(words) > 2 and words[1] == '-m' and words[2].startswith(
      ('pipeline.', 'model.', 'bench.')):
    return words[2], words[3:]
  if len(words) > 1 and words[1].startswith('examples/'):
    return words[1], words[2:]
  return None


def _etl_parse(argv):
  # pylint: disable=import-outside-toplevel
  from pipeline.cli.arguments import StrictArgumentParser, check_beam_options
  example = importlib.import_module('examples.etl_filter')
  _, rest = example.parse_args(argv)
  check_beam_options(StrictArgumentParser(prog='examples/etl_filter.py'),
                     rest)


# Commands whose command line is checked here, in this process, with the
# parser the command itself uses.
IN_PROCESS = {
    'pipeline.score': _score_parse,
    'pipeline.train': _train_parse,
    'model.train': _train_parse,  # hands over to pipeline.train
    'pipeline.import_keras': _import_parse,
    'model.import_keras': _import_parse,  # hands over to pipeline.import_keras
    'examples/etl_filter.py': _etl_parse,
}
# Commands whose parser is built inside their main(): their options are
# checked against their --help in the slow test.
HELP_ONLY = {'bench.run', 'pipeline.job_servers'}


def test_documents_have_commands():
  targets = {target for _, target, _ in _commands()}
  assert {'pipeline.train', 'pipeline.score',
          'examples/etl_filter.py'} <= targets, targets


def test_every_command_in_the_documents_parses():
  problems = []
  for document, target, argv in _commands():
    where = (f'{document}: python {"" if target.endswith(".py") else "-m "}'
             f'{target} {" ".join(argv)}')
    if target == UNREADABLE:
      problems.append(f'{document}: unbalanced quotes in {argv[0]!r}')
      continue
    if target.endswith('.py'):
      if not (ROOT / target).is_file():
        problems.append(f'{where}: no such script')
        continue
    elif importlib.util.find_spec(target) is None:
      problems.append(f'{where}: no such module')
      continue
    if target in HELP_ONLY:
      continue
    if target not in IN_PROCESS:
      problems.append(f'{where}: a command this test does not know; add it '
                      f'to IN_PROCESS (with its parser) or HELP_ONLY')
      continue
    message = _exit_message(IN_PROCESS[target], argv)
    if message is not None:
      problems.append(f'{where}: {message}')
  assert not problems, '\n'.join(problems)


def test_the_command_check_catches_drift():
  assert _exit_message(_score_parse, [
      '--input', 'x', '--model', 'y', '--output', 'z', '--num_shard', '2'])
  assert _exit_message(_train_parse, ['--train', 'x', '--out', 'y',
                                      '--epoch', '3'])
  assert _exit_message(_score_parse, [
      '--input', 'x', '--model', 'y', '--output', 'z', '--runner',
      'DirectRunner', '--direct_num_workers', '2']) is None


def _help_targets() -> list[str]:
  """The commands in shell blocks, and every ``python -m`` module of this
  repository the documents' text names (``python -m model.train`` "still
  works")."""
  named = {module for path in DOCUMENTS for module in re.findall(
      r'python3? -m ((?:pipeline|model|bench)\.[\w.]*\w)',
      path.read_text(encoding='utf-8'))}
  return sorted(({target for _, target, _ in _commands()} | named) -
                {UNREADABLE})


@pytest.mark.slow
@pytest.mark.parametrize('target', _help_targets())
def test_every_documented_command_runs_its_help(target):
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  argv = ([sys.executable, target, '--help'] if target.endswith('.py')
          else [sys.executable, '-m', target, '--help'])
  done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  if target in HELP_ONLY:
    used = {word.split('=', 1)[0]
            for _, t, args in _commands() if t == target
            for word in args if word.startswith('--')}
    missing = [option for option in sorted(used) if not re.search(
        rf'(?<![\w-]){re.escape(option)}(?![\w-])', done.stdout)]
    assert not missing, f'{target} --help does not list {missing}'


# --- The set-up commands ----------------------------------------------------


def test_the_two_commands_for_a_fresh_machine():
  lines = [line.strip() for line in
           README.read_text(encoding='utf-8').splitlines()]
  assert FIRST_COMMAND in lines, 'README.md lost the first command'
  # The full suite, as .ci/run runs it.
  assert TEST_COMMAND in lines, 'README.md lost the test command'
  assert FAST_TIER_COMMAND in lines, 'README.md lost the fast tier'


@pytest.mark.slow
def test_the_first_command_trains_and_scores_as_written(tmp_path):
  """The README's first command after its set-up (the virtual environment
  is this one): train on the example corpus, score it, show three lines;
  run by the shell as written, in a folder that holds ``examples/``."""
  steps = FIRST_COMMAND.split(' && ')
  assert steps[:3] == ['python3 -m venv .venv', '. .venv/bin/activate',
                       'pip install -e .']
  (tmp_path / 'examples').symlink_to(ROOT / 'examples')
  env = dict(os.environ,
             PATH=os.path.dirname(sys.executable) + os.pathsep +
             os.environ.get('PATH', ''),
             PYTHONPATH=str(ROOT))
  done = subprocess.run(['bash', '-c', ' && '.join(steps[3:])], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  shown = [line for line in done.stdout.splitlines() if line.startswith('{')]
  assert len(shown) == 3
  for line in shown:
    record = json.loads(line)
    assert len(record['scores']) == 8 and record['n_tokens'] >= 0


# --- Links ------------------------------------------------------------------


def _slug(heading: str) -> str:
  """A heading's anchor as GitHub makes it."""
  text = heading.strip().lower().replace('`', '')
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def _anchors(path) -> set[str]:
  text = path.read_text(encoding='utf-8')
  headings = []
  in_fence = False
  for line in text.splitlines():
    if line.lstrip().startswith('```'):
      in_fence = not in_fence
    elif not in_fence and re.match(r'#{1,6} ', line):
      headings.append(line.lstrip('#'))
  return {_slug(h) for h in headings}


def test_links_between_the_documents_resolve():
  problems = []
  for path in DOCUMENTS:
    text = path.read_text(encoding='utf-8')
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
      if re.match(r'\w+://', target):
        continue
      file, _, anchor = target.partition('#')
      linked = (path.parent / file).resolve() if file else path
      if not linked.exists():
        problems.append(f'{path.name}: {target}: no such file')
      elif anchor and linked.suffix == '.md' and anchor not in _anchors(
          linked):
        problems.append(f'{path.name}: {target}: no such heading')
  assert not problems, '\n'.join(problems)


def test_the_readme_links_every_document():
  text = README.read_text(encoding='utf-8')
  assert DOCS, 'docs/ holds no document'
  for path in DOCS:
    assert f'](docs/{path.name}' in text, f'README.md does not link {path.name}'


def test_every_file_the_documents_name_exists():
  """``runtime/console.py``, ``tests/model/test_train.py::test_x``, ...: a
  file moved in a restructure must not leave a stale path behind."""
  named = re.compile(r'`((?:runtime|model|transforms|pipeline|bench|tests|'
                     r'examples|docs)/[\w./-]*\w)/?(?:::(\w+))?`')
  missing = []
  for path in DOCUMENTS:
    for name, test in named.findall(path.read_text(encoding='utf-8')):
      if not (ROOT / name).exists():
        missing.append(f'{path.name}: {name}')
      elif test and f'def {test}(' not in (ROOT / name).read_text(
          encoding='utf-8'):
        missing.append(f'{path.name}: {name}::{test}')
  assert not missing, '\n'.join(missing)


# --- No machine paths -------------------------------------------------------


def test_no_absolute_path_of_the_machine_in_committed_text():
  results = ROOT / 'bench' / 'results'
  files = DOCUMENTS + sorted(p for p in results.rglob('*')
                             if p.suffix in ('.md', '.json'))
  hits = []
  for path in files:
    for number, line in enumerate(
        path.read_text(encoding='utf-8').splitlines(), 1):
      for match in MACHINE_PATH.finditer(line):
        hits.append(f'{path.relative_to(ROOT)}:{number}: '
                    f'{line[max(0, match.start() - 30):match.end() + 30]}')
  assert not hits, '\n'.join(hits[:20])
