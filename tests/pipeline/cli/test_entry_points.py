"""The console scripts and ``python -m`` entry points reach their commands
(in-process: the quick exit is replaced by a recorder; the real scripts run
in ``test_cli.py``)."""

import runpy
import sys

import pytest

from pipeline.cli import entry_points
from pipeline.cli import import_model as import_command
from pipeline.cli import score as score_command
from pipeline.cli import train as train_command
from runtime import collector, process_exit


@pytest.fixture
def ran(monkeypatch):
  """The ``main`` each entry point hands to `process_exit.run_command`."""
  mains = []
  monkeypatch.setattr(process_exit, 'run_command', mains.append)
  monkeypatch.setattr(sys, 'argv', ['ja-doc-score', '--help'])
  yield mains
  collector.resume()  # `entry_points.score` paused it, as a command does.


@pytest.mark.parametrize('script,command', [
    (entry_points.score, score_command),
    (entry_points.train, train_command),
    (entry_points.import_keras, import_command)])
def test_each_script_runs_its_command(ran, script, command):
  script()
  assert ran == [command.main]


@pytest.mark.parametrize('module', ['pipeline.score', 'pipeline.train',
                                    'pipeline.import_keras'])
def test_the_module_entry_points_run_nothing_when_imported(ran, module):
  runpy.run_module(module, run_name='not_main')
  assert ran == []
