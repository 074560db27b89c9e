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
