"""The strict command-line rules the commands share (`pipeline.cli.arguments`)."""

import argparse

import pytest

from pipeline.cli import arguments


@pytest.mark.parametrize('typo,valid,want', [
    ('--num-shards', ['--num_shards', '--format'], '--num_shards'),
    ('--formt=csv', ['--num_shards', '--format'], '--format'),
    ('--epoch', ['--epochs', '--patience'], '--epochs'),
    ('--zzz', ['--epochs'], None),
])
def test_unknown_option_message_names_the_closest(typo, valid, want):
  message = arguments.unknown_argument_message([typo, 'x'], valid)
  name = typo.split('=')[0]
  assert message.startswith(f'unrecognized option {name}')
  assert (f'(did you mean {want}?)' in message) == (want is not None)


def test_stray_value_is_named():
  assert arguments.unknown_argument_message(['stray'], ['--a']) == (
      "unexpected argument 'stray'")


def test_value_checks():
  assert arguments.non_negative_int('0') == 0
  assert arguments.positive_int('3') == 3
  for check, bad in ((arguments.non_negative_int, '-1'),
                     (arguments.positive_int, '0'),
                     (arguments.non_negative_float, '-0.5'),
                     (arguments.non_negative_float, 'nan')):
    with pytest.raises(argparse.ArgumentTypeError):
      check(bad)


REQUIRED = ['--input', 'x.jsonl', '--model', 'm', '--output', 'o']


@pytest.mark.parametrize('extra,suggestion', [
    (['--num-shards', '0'], '--num_shards'),  # dashes: Beam would drop it
    (['--id-field', 'id'], '--id_field'),  # even with the default value
    (['--direct_num_worker', '2'], '--direct_num_workers'),
    (['--runer=DirectRunner'], '--runner'),
])
def test_options_neither_the_command_nor_beam_knows_are_refused(
    capsys, extra, suggestion):
  from pipeline.cli import options
  with pytest.raises(SystemExit) as exit_:
    options.parse_args(REQUIRED + extra)
  assert exit_.value.code == 2
  name = extra[0].split('=')[0]
  assert (f'unrecognized option {name} (did you mean {suggestion}?)'
          in capsys.readouterr().err)


@pytest.mark.parametrize('extra,name,value', [
    (['--streaming'], 'streaming', True),
    (['--max_num_workers', '-1'], 'max_num_workers', -1),
    (['--experiments=a', '--experiments', 'b'], 'experiments', ['a', 'b']),
    (['--runner', 'FlinkRunner', '--parallelism', '2'], 'parallelism', 2),
])
def test_beam_options_pass_as_beam_reads_them(extra, name, value):
  from pipeline.cli import options
  _, parsed = options.parse_args(REQUIRED + extra)
  assert parsed.get_all_options()[name] == value


def test_a_bad_value_of_a_beam_option_is_one_line(capsys):
  from pipeline.cli import options
  with pytest.raises(SystemExit):
    options.parse_args(REQUIRED + ['--direct_num_workers', 'two'])
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and 'invalid int value' in err[0]
  assert err[1].startswith('Run ') and '--help' in err[1]


@pytest.mark.parametrize('parser_module', [
    'pipeline.cli.options', 'pipeline.cli.train', 'pipeline.cli.import_model'])
def test_a_parse_holds_only_the_options_destinations(parser_module):
  """What a parse returns is what _SUMMARY.json records as ``options``:
  each option once, under its destination, with no ``--name`` copies."""
  import importlib
  parser = importlib.import_module(parser_module).build_parser()
  actions = [a for a in parser._actions if a.dest != 'help']  # pylint: disable=protected-access
  # The required options given a value each ('8' is a path and a number).
  argv = [arg for a in actions if a.required
          for arg in (a.option_strings[-1], '8')]
  parsed = vars(parser.parse_known_args(argv)[0])
  dests = {a.dest for a in actions}
  assert set(parsed) == dests
  assert set(parser.option_defaults()) <= parser.option_names()
