"""The console scripts and ``python -m`` entry points reach their commands
(in-process: the quick exit is replaced by a recorder; the real scripts run
in ``test_cli.py``)."""

import os
import runpy
import sys
import tempfile

import pytest

from pipeline.cli import entry_points
from pipeline.cli import import_model as import_command
from pipeline.cli import score as score_command
from pipeline.cli import train as train_command
from runtime import collector, process_exit, signals, temp_dir


@pytest.fixture
def ran(monkeypatch):
  """The ``main`` each entry point hands to `process_exit.run_command`
  (signal handlers are not installed in pytest's process)."""
  mains = []
  monkeypatch.setattr(process_exit, 'run_command', mains.append)
  monkeypatch.setattr(signals, 'install', lambda: mains.append('signals'))
  monkeypatch.setattr(sys, 'argv', ['ja-doc-score', '--help'])
  yield mains
  collector.resume()  # `entry_points.score` paused it, as a command does.


@pytest.mark.parametrize('script,command', [
    (entry_points.train, train_command),
    (entry_points.import_keras, import_command)])
def test_each_script_runs_its_command(ran, script, command):
  script()
  assert ran == [command.main]


def test_the_scoring_script_handles_signals_then_runs_its_command(
    ran, monkeypatch, capsys, tmp_path):
  """Signal handlers first, then the command in a temp folder of its own
  (`runtime.temp_dir`)."""
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  monkeypatch.setattr(tempfile, 'tempdir', None)  # Read TMPDIR afresh.
  seen = []
  monkeypatch.setattr(score_command, 'main',
                      lambda: seen.append(tempfile.gettempdir()) or 0)
  entry_points.score()
  assert ran == ['signals', entry_points._score]  # pylint: disable=protected-access
  assert entry_points._score() == 0  # pylint: disable=protected-access
  assert len(seen) == 1
  assert os.path.dirname(seen[0]) == str(tmp_path)
  assert os.path.basename(seen[0]).startswith(temp_dir.PREFIX)
  assert tempfile.gettempdir() != seen[0]  # Restored after the command.


@pytest.mark.parametrize('module', ['pipeline.score', 'pipeline.train',
                                    'pipeline.import_keras'])
def test_the_module_entry_points_run_nothing_when_imported(ran, module):
  runpy.run_module(module, run_name='not_main')
  assert ran == []
