"""``python -m pipeline.score`` as a user runs it: in a subprocess.

Checks the help, strict options, one-line early errors, and that a run's
console holds only the command's own lines (no TensorFlow or Beam start-up
notices), in-process and with worker subprocesses.
"""

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from pipeline.cli import arguments
from tests.commands import ROOT, run_command

CORPUS = os.path.join(ROOT, 'examples', 'corpus.jsonl')

# Lines of TensorFlow's, absl's and Beam's start-up, and Python logging's
# default format (Beam's worker subprocesses).
FOREIGN = re.compile(
    r'cudart_stub|cpu_feature_guard|absl::InitializeLog|cuInit|oneDNN|'
    r'To enable the following instructions|apitools|Resource module|'
    r'Discarding unparseable|semi_persistent|sdk_worker|Traceback|'
    r'^(DEBUG|INFO|WARNING|ERROR)[: ]', re.M)
# The command's own stderr lines on a successful run.
OWN_STDERR = re.compile(
    r'^(Scoring .* on \w+( \(\d+ worker processes\))?|'
    r'\[\w+\] running; no counts from the workers yet|\[\w+\] scored [\d,]+ documents \([\d,]+ tokens'
    r'(, [\d,]+ errors)?\), [\d,.]+ docs/s(, [\d,]+ records read)?'
    r'(, \d+% of the input read'
    r'(, about \w+ left)?)?)$')

# Each test runs a command, or a job with worker processes.
pytestmark = pytest.mark.slow




@pytest.mark.parametrize('module,parser_module', [
    ('pipeline.score', 'pipeline.cli.options'),
    ('pipeline.train', 'pipeline.cli.train'),
    ('pipeline.import_keras', 'pipeline.cli.import_model')])
def test_help_lists_every_option_with_its_default(module, parser_module):
  import importlib
  parser = importlib.import_module(parser_module).build_parser()
  out = run_command(module, '--help')
  assert out.returncode == 0 and out.stderr == ''
  text = ' '.join(out.stdout.split())
  for option in parser.option_names():
    assert option in text, option
  for option, default in parser.option_defaults().items():
    # Each option's help ends with its default, blank text quoted.
    shown = ' '.join(arguments.shown_default(default).split())
    assert f'(default: {shown})' in text, (option, default)
  if module == 'pipeline.score':
    assert "Beam's pipeline options are accepted too" in text
    assert '--runner' in text and '--flink_master' in text


def test_only_namespaced_console_scripts_are_declared():
  with open(os.path.join(ROOT, 'setup.py'), encoding='utf-8') as f:
    tree = ast.parse(f.read())
  [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and
            getattr(n.func, 'attr', '') == 'setup']
  [entry_points] = [k.value for k in call.keywords if k.arg == 'entry_points']
  scripts = ast.literal_eval(entry_points)['console_scripts']
  declared = dict(s.replace(' ', '').split('=') for s in scripts)
  assert declared == {'ja-doc-score': 'pipeline.cli.entry_points:score',
                      'ja-doc-train': 'pipeline.cli.entry_points:train',
                      'ja-doc-import': 'pipeline.cli.entry_points:import_keras'}
  import importlib
  for target in declared.values():
    module, name = target.split(':')
    assert callable(getattr(importlib.import_module(module), name))


def test_installed_script_answers_help():
  script = os.path.join(sysconfig.get_path('scripts'), 'ja-doc-score')
  if not os.path.exists(script):
    pytest.skip('the package is not installed in this environment')
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([script, '--help'], capture_output=True, text=True,
                       env=env, timeout=120)
  assert out.returncode == 0
  assert out.stdout.startswith('usage: ja-doc-score')


@pytest.mark.parametrize('typo,value,suggestion', [
    ('--num-shards', '3', '--num_shards'),  # the command's option
    ('--formt', 'csv', '--format'),
    ('--direct_num_worker', '2', '--direct_num_workers'),  # Beam's option
])
def test_unknown_option_is_an_error_naming_the_closest(tmp_path, typo, value,
                                                       suggestion):
  out = run_command('pipeline.score', '--input', 'x.jsonl', '--model', 'm',
                    '--output', str(tmp_path / 'out'), typo, value)
  assert out.returncode == 2 and out.stdout == ''
  assert f'unrecognized option {typo} (did you mean {suggestion}?)' in (
      out.stderr)
  assert not (tmp_path / 'out').exists()


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp('cli')
  docs = root / 'docs.jsonl'
  docs.write_text(open(CORPUS, encoding='utf-8').read(), encoding='utf-8')
  (root / 'notes.md').write_text('# 見出し\n本文です。\n', encoding='utf-8')
  (root / 'a_file').write_text('x')
  return root


@pytest.mark.parametrize('change,option,words', [
    (['--input', '{root}/missing.jsonl'], '--input', 'no such file'),
    (['--input', '{root}/none-*.jsonl'], '--input', '--allow_empty_input'),
    (['--input', '{root}/notes.md'], '--input_format', 'notes.md'),
    (['--output', '{root}/a_file'], '--output', 'is a file'),
    (['--output', '{root}/a_file/sub'], '--output', 'cannot write there'),
    (['--model', '{root}/no-bundle'], '--model', 'manifest.json'),
    (['--num_shards', '-1'], '--num_shards', 'must be 0 or more'),
])
def test_early_errors_are_one_line(inputs, trained_bundle, change, option,
                                   words):
  args = {'--input': str(inputs / 'docs.jsonl'), '--model':
          trained_bundle.path, '--output': str(inputs / 'out-early')}
  flag, value = change
  args[flag] = value.format(root=inputs)
  out = run_command('pipeline.score', *[x for kv in args.items() for x in kv])
  assert out.returncode == 2 and out.stdout == ''
  lines = out.stderr.splitlines()
  assert lines[0].startswith(('error: ', 'python -m pipeline.score: error:'))
  assert option in lines[0] and words in lines[0]
  # argparse adds one hint line; the checks print nothing else.
  assert len(lines) == (2 if 'python -m' in lines[0] else 1), lines
  assert not (inputs / 'out-early').exists()


def _check_quiet(out):
  assert out.returncode == 0, out.stderr
  assert not FOREIGN.search(out.stderr), out.stderr
  assert not FOREIGN.search(out.stdout), out.stdout
  stray = [l for l in out.stderr.splitlines() if not OWN_STDERR.match(l)]
  assert not stray, out.stderr
  stdout = out.stdout.splitlines()
  assert len(stdout) == 2, out.stdout
  assert stdout[0].startswith('Scored 320 documents')
  assert stdout[1].startswith('Outputs: ')


def test_a_run_prints_only_its_own_lines(inputs, trained_bundle):
  outdir = inputs / 'out-quiet'
  out = run_command('pipeline.score', '--input', str(inputs / 'docs.jsonl'),
                    '--model', trained_bundle.path, '--output', str(outdir),
                    '--progress_secs', '0.5')
  _check_quiet(out)
  # Until a worker has counted anything, a line says so ('running; no
  # counts from the workers yet'); then the counts.
  assert re.search(r'^\[\w+\] (scored|running)', out.stderr, re.M), (
      out.stderr)
  progress_lines = [l for l in out.stderr.splitlines() if '] scored ' in l]
  counts = [int(re.search(r'scored ([\d,]+)', l).group(1).replace(',', ''))
            for l in progress_lines]
  assert counts == sorted(counts) and all(c <= 320 for c in counts)
  # Records read run ahead of (or level with) documents scored.
  for line, scored in zip(progress_lines, counts):
    read = re.search(r'([\d,]+) records read', line)
    if read:
      assert scored <= int(read.group(1).replace(',', '')) <= 320, line
  summary = json.loads((outdir / '_SUMMARY.json').read_text('utf-8'))
  assert summary['counts']['scored'] == 320
  assert summary['counts']['records_read'] == 320


@pytest.mark.parametrize('warm', ['auto', 'off'])
def test_worker_subprocesses_are_quiet_too(inputs, trained_bundle, warm):
  """Warm workers (`pipeline.local.warm_workers`) start before the console's
  filter does; their stderr goes through it all the same."""
  outdir = inputs / f'out-multi-{warm}'
  out = run_command('pipeline.score', '--input', str(inputs / 'docs.jsonl'),
                    '--model', trained_bundle.path, '--output', str(outdir),
                    '--format', 'csv', '--scores_as', 'columns',
                    '--direct_running_mode', 'multi_processing',
                    '--direct_num_workers', '2', '--progress_secs', '1',
                    '--warm_workers', warm)
  _check_quiet(out)
  header = sorted(outdir.glob('scores-*.csv'))[0].read_text(
      'utf-8').splitlines()[0]
  assert header == ','.join(['id', *trained_bundle.output_names, 'n_tokens',
                             'truncated'])


def test_log_level_shows_more(inputs, trained_bundle):
  """--log_level asks for the libraries' messages; nothing is filtered."""
  out = run_command('pipeline.score', '--input', str(inputs / 'docs.jsonl'),
                    '--model', trained_bundle.path, '--output',
                    str(inputs / 'out-verbose'), '--log_level', 'info',
                    '--progress_secs', '0')
  assert out.returncode == 0
  assert re.search(r'^INFO apache_beam', out.stderr, re.M), out.stderr


_LAUNCHER = r'''
import json, sys
from pipeline.cli import score
status = score.main(sys.argv[1:])
print(json.dumps({'status': status,
                  'tensorflow': 'tensorflow' in sys.modules}))
'''


def test_a_launcher_with_worker_processes_does_not_import_tensorflow(
    inputs, trained_bundle):
  """The workers load and probe the model; the launcher only checks files."""
  docs = inputs / 'three.jsonl'
  docs.write_text(''.join(open(CORPUS, encoding='utf-8').readlines()[:3]),
                  encoding='utf-8')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  out = subprocess.run(
      [sys.executable, '-c', _LAUNCHER, '--input', str(docs), '--model',
       trained_bundle.path, '--output', str(inputs / 'out-launcher'),
       '--direct_running_mode', 'multi_processing', '--direct_num_workers',
       '2', '--progress_secs', '0'],
      env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report == {'status': 0, 'tensorflow': False}, out.stderr
  assert len((inputs / 'out-launcher' / 'scores-00000-of-00001.jsonl')
             .read_text('utf-8').splitlines()) == 3


def test_a_model_refused_in_the_workers_is_one_clean_error(inputs,
                                                           trained_bundle):
  """A bundle whose model fails the probe (checksums intact) in the workers:
  the command's own error line names it; no worker tracebacks."""
  spoiled = inputs / 'spoiled-bundle'
  import shutil
  shutil.copytree(trained_bundle.path, spoiled)
  manifest = json.loads((spoiled / 'manifest.json').read_text('utf-8'))
  manifest['outputs'] = manifest['outputs'][:7]
  manifest['empty_document_scores'] = manifest['empty_document_scores'][:7]
  (spoiled / 'manifest.json').write_text(json.dumps(manifest), 'utf-8')
  out = run_command('pipeline.score', '--input', str(inputs / 'docs.jsonl'),
                    '--model', str(spoiled), '--output',
                    str(inputs / 'out-spoiled'), '--direct_running_mode',
                    'multi_processing', '--direct_num_workers', '2',
                    '--progress_secs', '0')
  assert out.returncode == 1
  assert not FOREIGN.search(out.stderr), out.stderr
  errors = [l for l in out.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, out.stderr
  assert 'spoiled-bundle/saved_model' in errors[0]
  assert 'manifest names 7 outputs' in errors[0]
  assert not list((inputs / 'out-spoiled').glob('scores-*'))
