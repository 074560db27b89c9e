"""The garbage collector waits while a command imports and builds its job.

`runtime.collector` pauses Python's cyclic collector from a command's first
line; `pipeline.score` resumes it, with everything made so far frozen, just
before the job runs. The command-line checks run real commands in fresh
processes; the probe counts the collector's runs through `gc.callbacks` and
reports at the process's exit (`runtime.process_exit` ends it with
``os._exit``).
"""

import gc
import json
import subprocess
import sys

import pytest

from runtime import collector

_PROBE = r'''
import gc, json, os, sys
# Collections that start once Beam's import has begun.
late = []
gc.callbacks.append(lambda phase, info: phase == 'start' and
                    'apache_beam' in sys.modules and late.append(info))
real_exit = os._exit
def report_then_exit(status):
  print(json.dumps({'late_collections': len(late), 'enabled': gc.isenabled(),
                    'frozen': gc.get_freeze_count()}), flush=True)
  real_exit(status)
os._exit = report_then_exit
sys.argv = ['ja-doc-score'] + sys.argv[1:]
ENTRY
'''
_ENTRIES = {
    'python -m pipeline.score':
        "import runpy; runpy.run_module('pipeline.score', run_name='__main__',"
        " alter_sys=True)",
    'ja-doc-score':
        'from pipeline.cli.entry_points import score; score()',
}


def _probe(entry: str, *args: str) -> dict:
  out = subprocess.run(
      [sys.executable, '-c', _PROBE.replace('ENTRY', _ENTRIES[entry]), *args],
      capture_output=True, text=True, check=False, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def collector_state():
  """Restores the collector as it was (and unfreezes what a test froze)."""
  was = gc.isenabled()
  yield
  gc.unfreeze()
  (gc.enable if was else gc.disable)()


@pytest.mark.parametrize('enabled', [True, False])
def test_resume_restores_what_pause_found(enabled, collector_state):
  del collector_state
  (gc.enable if enabled else gc.disable)()
  collector.pause()
  assert not gc.isenabled()
  collector.pause()  # Twice: still one pause.
  collector.resume()
  assert gc.isenabled() == enabled
  collector.resume()  # Nothing paused: changes nothing.
  assert gc.isenabled() == enabled


def test_resume_with_freeze_keeps_what_was_made(collector_state):
  del collector_state
  gc.enable()
  gc.unfreeze()
  collector.pause()
  collector.resume(freeze=True)
  assert gc.isenabled() and gc.get_freeze_count() > 0


def test_resume_without_a_pause_freezes_nothing(collector_state):
  del collector_state
  gc.disable()
  gc.unfreeze()
  collector.resume(freeze=True)
  assert not gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.slow
@pytest.mark.parametrize('entry', sorted(_ENTRIES))
def test_no_collection_while_a_command_imports(entry):
  """``--help`` runs the command's whole import (Beam and the package);
  unpaused, Beam's import alone starts about 300 collections."""
  assert _probe(entry, '--help')['late_collections'] == 0


@pytest.mark.slow
def test_a_run_resumes_the_collector_with_the_imports_frozen(
    tmp_path, trained_bundle):
  docs = tmp_path / 'docs.jsonl'
  docs.write_text(''.join(
      json.dumps({'id': str(i), 'text': text}, ensure_ascii=False) + '\n'
      for i, text in enumerate(['今日は良い天気です。', '猫が好きです。'])),
                  encoding='utf-8')
  probe = _probe('python -m pipeline.score', '--input', str(docs), '--model',
                 trained_bundle.path, '--output', str(tmp_path / 'out'))
  assert probe['enabled'] and probe['frozen'] > 100_000, probe
  with open(tmp_path / 'out' / '_SUMMARY.json', encoding='utf-8') as f:
    assert json.load(f)['counts']['scored'] == 2


def test_an_in_process_run_resumes_a_paused_collector(tmp_path, trained_bundle,
                                                      collector_state):
  """`pipeline.score.run` resumes the pause of the entry points (here taken
  by the test), whoever calls it."""
  del collector_state
  from pipeline.cli import score  # pylint: disable=import-outside-toplevel
  docs = tmp_path / 'docs.jsonl'
  docs.write_text('{"id": "a", "text": "犬が走る。"}\n', encoding='utf-8')
  gc.enable()
  gc.unfreeze()
  collector.pause()
  score.run(['--input', str(docs), '--model', trained_bundle.path, '--output',
             str(tmp_path / 'out')])
  assert gc.isenabled() and gc.get_freeze_count() > 0


@pytest.mark.parametrize('enabled', [True, False])
@pytest.mark.parametrize('depth', [1, 2, 3])
def test_collector_paused_nests_and_restores(enabled, depth):
  import contextlib
  import gc

  was = gc.isenabled()
  try:
    (gc.enable if enabled else gc.disable)()
    with contextlib.ExitStack() as stack:
      for _ in range(depth):
        stack.enter_context(collector.paused())
        assert not gc.isenabled()
    assert gc.isenabled() == enabled
    with pytest.raises(ValueError):
      with collector.paused():
        raise ValueError('restored on errors too')
    assert gc.isenabled() == enabled
  finally:
    (gc.enable if was else gc.disable)()
