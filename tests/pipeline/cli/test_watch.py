"""``python -m pipeline.score --watch``: a folder followed until a signal.

The fast tests check the options, the usage errors, the windows and the
watcher's bookkeeping with a stand-in job. The slow ones start the command
as a user does, drop files into its folder while it runs (written under a
hidden name, then renamed into the pattern, as a producer does), stop it
with SIGINT or SIGTERM, and check that every document of every file is in
exactly one window's scores or errors, with the scores of a batch run.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline.cli import options as score_options
from pipeline.cli import watch
from pipeline.cli.preflight import UsageError
from pipeline.io import outdir
from tests import services
from tests.commands import ROOT, run_command

# A run that never writes what the test waits for fails after this long.
DEADLINE_SECS = 180.0
# The bound for a stop.
STOP_SECS = 10.0


# --- Options and usage errors (fast) ----------------------------------------

def test_the_watch_options_and_their_defaults():
  args, _ = score_options.parse_args(
      ['--input', 'in/*.jsonl', '--model', 'b', '--output', 'o'])
  assert (args.watch, args.watch_interval_secs, args.window_secs) == (
      False, 10.0, 60)
  args, _ = score_options.parse_args(
      ['--input', 'in/*.jsonl', '--model', 'b', '--output', 'o', '--watch',
       '--watch_interval_secs', '0.5', '--window_secs', '5'])
  assert (args.watch, args.watch_interval_secs, args.window_secs) == (
      True, 0.5, 5)


@pytest.mark.parametrize('flag,value', [
    ('--watch_interval_secs', '0'), ('--watch_interval_secs', '-1'),
    ('--watch_interval_secs', 'inf'), ('--window_secs', '0'),
    ('--window_secs', '1.5')])
def test_a_bad_interval_or_window_is_a_usage_error(flag, value, capsys):
  with pytest.raises(SystemExit) as e:
    score_options.parse_args(['--input', 'i/*.jsonl', '--model', 'b',
                              '--output', 'o', '--watch', flag, value])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert f'argument {flag}' in err.splitlines()[0]


def _args(tmp_path, *extra):
  argv = ['--input', str(tmp_path / 'in' / '*.jsonl'), '--model', 'bundle',
          '--output', str(tmp_path / 'out'), '--watch', *extra]
  args, options = score_options.parse_args(argv)
  return args, options, argv


@pytest.mark.parametrize('extra,message', [
    (['--format', 'parquet'], '--format parquet: --watch writes jsonl or csv'),
    (['--format', 'tfrecord'], '--format tfrecord: --watch writes'),
    (['--runner', 'FlinkRunner'], "--runner FlinkRunner: --watch runs on this "
     "machine's DirectRunner only"),
    (['--direct_running_mode', 'multi_processing'],
     '--direct_running_mode multi_processing: --watch scores in this process'),
    (['--direct_num_workers', '2'], '--direct_num_workers 2: --watch scores'),
])
def test_usage_errors_name_the_option(tmp_path, extra, message):
  args, options, argv = _args(tmp_path, *extra)
  with pytest.raises(UsageError, match='^' + message.replace('(', r'\(')):
    watch.check_watch(args, options, argv)


def test_an_input_folder_is_a_usage_error(tmp_path):
  (tmp_path / 'in').mkdir()
  args, options, argv = _args(tmp_path)
  args.input = str(tmp_path / 'in')
  with pytest.raises(UsageError, match='is a directory; give a file pattern'):
    watch.check_watch(args, options, argv)


def test_a_missing_folder_is_a_usage_error(tmp_path):
  args, options, argv = _args(tmp_path)
  with pytest.raises(UsageError, match='^' + re.escape(
      f'--input {args.input}: there is no folder {tmp_path / "in"} to '
      f'watch; create it, or fix the pattern.') + '$'):
    watch.check_watch(args, options, argv)


def test_in_process_direct_runner_flags_are_accepted(tmp_path):
  (tmp_path / 'in').mkdir()
  args, options, argv = _args(tmp_path, '--direct_running_mode', 'in_memory',
                              '--direct_num_workers', '1', '--format', 'csv')
  watch.check_watch(args, options, argv)


# --- Windows and the watcher's bookkeeping (fast) ---------------------------

def test_windows_are_aligned_as_fixed_windows():
  assert watch.window_of(125.0, 60) == watch.Window(120.0, 180.0)
  assert watch.window_of(120.0, 60) == watch.Window(120.0, 180.0)
  assert watch.window_of(119.999, 60) == watch.Window(60.0, 120.0)
  assert outdir.window_names(1796500800, 1796500860) == (
      'scores-20261205T200000Z-20261205T200100Z',
      '_errors-20261205T200000Z-20261205T200100Z')


class _FakeJob(watch.Watcher):
  """A watcher whose window jobs only record their files."""
  def __init__(self, args, clock):
    super().__init__(args, [], scorer=None, plan=None, clock=clock,
                     sleep=lambda secs: None)
    self.jobs = []

  def _run_job(self, files, names):
    self.jobs.append((names, [os.path.basename(m.path) for m in files]))
    return {'scored': len(files), 'errors': 0}


def _put(folder, name, text='{"id": 1, "text": "猫"}\n'):
  """Writes ``name`` as a producer does: a hidden name, then a rename."""
  hidden = os.path.join(folder, f'.{name}.part')
  with open(hidden, 'w', encoding='utf-8') as f:
    f.write(text)
  os.rename(hidden, os.path.join(folder, name))


def test_each_file_is_taken_once_in_the_window_it_was_first_seen(
    tmp_path, capsys):
  folder = tmp_path / 'in'
  folder.mkdir()
  args, _, _ = _args(tmp_path, '--window_secs', '10')
  now = [1000.0]
  watcher = _FakeJob(args, lambda: now[0])
  _put(str(folder), 'a.jsonl')
  (folder / 'notes.txt').write_text('not matched')
  (folder / '_hidden.jsonl').write_text('{}')
  watcher.step()                       # [1000, 1010): a
  now[0] = 1004.0
  _put(str(folder), 'b.jsonl')
  watcher.step()                       # b too; a again is not new
  assert watcher.jobs == []
  now[0] = 1010.5
  watcher.step()                       # the window ended: one job
  assert watcher.jobs == [(outdir.window_names(1000.0, 1010.0),
                           ['a.jsonl', 'b.jsonl'])]
  now[0] = 1031.0
  watcher.step()                       # empty windows write nothing
  _put(str(folder), 'c.jsonl')
  watcher.step()
  now[0] = 1040.0
  watcher.step()
  assert [files for _, files in watcher.jobs] == [
      ['a.jsonl', 'b.jsonl'], ['c.jsonl']]
  assert watcher.jobs[1][0] == outdir.window_names(1030.0, 1040.0)
  assert sorted(os.path.basename(p) for p in watcher.seen) == [
      'a.jsonl', 'b.jsonl', 'c.jsonl']
  assert watcher.pending == []
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith('Window 19700101T001640Z-19700101T001650Z: '
                             '2 files, 2 scored, 0 errors in ')
  # The files of written windows are listed; a later run skips them.
  assert [(os.path.basename(e['path']), e['window'])
          for e in outdir.watched_files(args.output)] == [
              ('a.jsonl', '19700101T001640Z-19700101T001650Z'),
              ('b.jsonl', '19700101T001640Z-19700101T001650Z'),
              ('c.jsonl', '19700101T001710Z-19700101T001720Z')]
  assert os.listdir(args.output) == [outdir.WATCHED_NAME]
  again = _FakeJob(args, lambda: now[0])
  _put(str(folder), 'd.jsonl')
  again.step()
  now[0] = 1050.0
  again.step()
  assert again.jobs == [(outdir.window_names(1040.0, 1050.0), ['d.jsonl'])]
  assert len(again.earlier) == 3
  assert (watcher.totals.windows, watcher.totals.scored) == (2, 3)


def test_a_cut_last_line_of_the_list_is_skipped(tmp_path):
  out = str(tmp_path / 'out')
  outdir.add_watched_files(out, ['/in/a.jsonl', '/in/b.jsonl'], 'W1')
  with open(os.path.join(out, outdir.WATCHED_NAME), 'a',
            encoding='utf-8') as f:
    f.write('{"path": "/in/c.js')  # Killed while it appended.
  assert [e['path'] for e in outdir.watched_files(out)] == [
      '/in/a.jsonl', '/in/b.jsonl']
  outdir.add_watched_files(out, ['/in/c.jsonl'], 'W2')
  assert [e['path'] for e in outdir.watched_files(out)] == [
      '/in/a.jsonl', '/in/b.jsonl', '/in/c.jsonl']


def test_the_stop_line_says_what_was_written():
  totals = watch.Totals()
  totals.add({'scored': 5, 'errors': 1})
  totals.add({'scored': 1, 'errors': 0})
  stopped = watch.Stopped('SIGTERM', 'out', totals, 3, 1)
  assert stopped.exit_status == 130
  assert stopped.line == (
      'Stopped by SIGTERM: watched 3 files; wrote 2 windows (6 documents '
      'scored, 1 error) under out; 1 file of the last window was not '
      'scored.')


# --- The command, stopped by a signal (slow) ---------------------------------

def _documents(corpus, first, count, prefix):
  return [{'id': f'{prefix}-{d["id"]}', 'text': d['text']}
          for d in corpus[first:first + count]]


def _lines(docs):
  return ''.join(json.dumps(d, ensure_ascii=False) + '\n' for d in docs)


@pytest.fixture(scope='module')
def drops(corpus):
  """The files the slow tests drop, by name: their text and their ids (one
  holds a line that is not JSON, which must be an error record)."""
  files = {}
  for name, first, count in (('a.jsonl', 0, 6), ('b.jsonl', 6, 8),
                             ('c.jsonl', 14, 5)):
    docs = _documents(corpus, first, count, name[0])
    text = _lines(docs)
    ids = [d['id'] for d in docs]
    if name == 'b.jsonl':
      text += '{"id": "broken", "text": \n'
      ids.append(None)  # The read error: its id is its source.
    files[name] = (text, ids)
  return files


def _batch_run(folder, texts, bundle_path):
  """``{id: scores}`` of the batch command over ``texts`` (``{name:
  text}``) with a bundle, run in ``folder``."""
  (folder / 'in').mkdir()
  for name, text in texts.items():
    (folder / 'in' / name).write_text(text, encoding='utf-8')
  out = run_command('pipeline.score', '--input', str(folder / 'in' / '*.jsonl'),
                    '--model', bundle_path, '--output', str(folder / 'out'),
                    cwd=ROOT)
  assert out.returncode == 0, out.stderr
  found = {}
  for path in glob.glob(str(folder / 'out' / 'scores-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      for line in f:
        record = json.loads(line)
        found[record['id']] = record['scores']
  return found


@pytest.fixture(scope='module')
def batch_scores(tmp_path_factory, drops, trained_bundle):
  """``{id: scores}`` of a batch run over the same files."""
  return _batch_run(tmp_path_factory.mktemp('batch'),
                    {name: text for name, (text, _) in drops.items()},
                    trained_bundle.path)


def _start(folder, out, bundle, *extra):
  env = dict(services.env())
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  return subprocess.Popen(
      [sys.executable, '-m', 'pipeline.score', '--watch',
       '--watch_interval_secs', '1', '--window_secs', '2', '--input',
       os.path.join(folder, '*.jsonl'), '--model', bundle, '--output', out,
       *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)


def _wait_for(proc, condition, what):
  deadline = time.monotonic() + DEADLINE_SECS
  while not condition():
    if proc.poll() is not None:
      raise AssertionError(f'the command ended before {what}: '
                           f'{proc.communicate()}')
    if time.monotonic() > deadline:
      os.killpg(proc.pid, signal.SIGKILL)
      raise AssertionError(f'never {what}: {proc.communicate()}')
    time.sleep(0.05)


def _written_ids(out):
  """The ids of the score records and the sources of the error records, in
  the windows' final shards."""
  ids, errors = [], []
  for path in glob.glob(os.path.join(out, 'scores-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      ids += [json.loads(line)['id'] for line in f]
  for path in glob.glob(os.path.join(out, '_errors-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      errors += [json.loads(line) for line in f]
  return ids, errors


def _errors_beside_scores(out):
  """Whether each window's scores have their errors beside them (a window's
  two sinks rename their shards one after the other)."""
  names = os.listdir(out) if os.path.isdir(out) else []
  return all(f'_errors-{n[len("scores-"):-len(".jsonl")]}.jsonl' in names
             for n in names if n.startswith('scores-'))


def _stop(proc, signum):
  sent = time.monotonic()
  os.killpg(proc.pid, signum) if signum == signal.SIGINT else (
      os.kill(proc.pid, signum))
  try:
    stdout, stderr = proc.communicate(timeout=60)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate()
  return stdout, stderr, time.monotonic() - sent


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM],
                         ids=['SIGINT', 'SIGTERM'])
def test_files_dropped_while_it_runs_are_scored_once(
    tmp_path, drops, batch_scores, trained_bundle, signum):
  folder, out = str(tmp_path / 'in'), str(tmp_path / 'out')
  os.makedirs(folder)
  _put(folder, 'a.jsonl', drops['a.jsonl'][0])  # There before the start.
  proc = _start(folder, out, trained_bundle.path)
  expected = []
  latencies = []
  for name in ('a.jsonl', 'b.jsonl', 'c.jsonl'):
    text, ids = drops[name]
    if name != 'a.jsonl':
      time.sleep(1.5)  # Into a later poll, often a later window.
      _put(folder, name, text)
    dropped = time.monotonic()
    expected += [i for i in ids if i is not None]
    _wait_for(proc, lambda: (set(expected) <= set(_written_ids(out)[0]) and
                             _errors_beside_scores(out)), f'scored {name}')
    latencies.append(time.monotonic() - dropped)
  stdout, stderr, took = _stop(proc, signum)
  name = signal.Signals(signum).name
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert proc.returncode == 130, (proc.returncode, stderr)
  assert took < STOP_SECS, took
  assert len(lines) == 1, stderr
  assert re.fullmatch(
      rf'Stopped by {name}: watched 3 files; wrote \d+ windows? \(19 '
      rf'documents scored, 1 error\) under {re.escape(out)}\.', lines[0]), lines
  assert 'Traceback' not in stdout + stderr
  assert stdout.startswith(f'Watching {folder}/*.jsonl every 1 s'), stdout
  # Every document in exactly one window, the broken line in the errors.
  ids, errors = _written_ids(out)
  assert sorted(ids) == sorted(expected)
  assert [(e['stage'], e['source']) for e in errors] == [
      ('read', os.path.join(folder, 'b.jsonl') + ':9')]
  # The scores of a batch run.
  for path in glob.glob(os.path.join(out, 'scores-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      for line in f:
        record = json.loads(line)
        assert record['scores'] == pytest.approx(batch_scores[record['id']],
                                                 abs=1e-6)
        assert set(record) == {'id', 'scores', 'n_tokens', 'truncated'}
  # Final names only, each window's scores beside its errors.
  names = sorted(os.listdir(out))
  assert not [n for n in names if n.startswith(('beam-temp', '.'))], names
  windows = {n.split('-', 1)[1].rsplit('-', 3)[0] for n in names
             if n != outdir.WATCHED_NAME}
  for window in windows:
    assert f'_errors-{window}-00000-of-00001.jsonl' in names, names
  assert all(n.startswith(('scores-', '_errors-')) for n in names
             if n != outdir.WATCHED_NAME), names
  assert sorted(os.path.basename(e['path'])
                for e in outdir.watched_files(out)) == sorted(drops)
  print(f'seconds from a drop to its scores: {latencies}')


@pytest.mark.slow
def test_a_stop_while_a_window_is_scored_leaves_it_whole_or_absent(
    tmp_path, corpus, trained_bundle):
  folder, out = str(tmp_path / 'in'), str(tmp_path / 'out')
  os.makedirs(folder)
  docs = [{'id': f'{i}-{d["id"]}', 'text': d['text']}
          for i in range(20) for d in corpus]
  _put(folder, 'big.jsonl', _lines(docs))
  proc = _start(folder, out, trained_bundle.path, '--batch_tokens', '300')
  _wait_for(proc, lambda: glob.glob(os.path.join(out, 'beam-temp-*')),
            'started writing a window')
  stdout, stderr, took = _stop(proc, signal.SIGTERM)
  assert proc.returncode == 130, (proc.returncode, stderr)
  assert took < STOP_SECS, took
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(
      'Stopped by SIGTERM: watched 1 file; '), stderr
  names = os.listdir(out)
  assert not [n for n in names if n.startswith(('beam-temp', '.'))], names
  ids, _ = _written_ids(out)
  if [n for n in names if n.startswith('scores-')]:  # Finished first: whole.
    assert 'wrote 1 window' in lines[0], (lines, names)
    assert sorted(ids) == sorted(d['id'] for d in docs)
  else:
    assert 'wrote 0 windows' in lines[0] and (
        '1 file of the last window was not scored' in lines[0]), lines
  del stdout
  # A rerun into the same folder scores what the stop left, and only that.
  proc = _start(folder, out, trained_bundle.path, '--batch_tokens', '300')
  _wait_for(proc, lambda: (sorted(_written_ids(out)[0]) == sorted(
      d['id'] for d in docs) and _errors_beside_scores(out)),
            'scored the file again')
  time.sleep(3.5)  # A window and a poll more: nothing is scored twice.
  stdout, stderr, _ = _stop(proc, signal.SIGINT)
  assert proc.returncode == 130, stderr
  assert sorted(_written_ids(out)[0]) == sorted(d['id'] for d in docs)
  skipped = '(1 file scored by an earlier run skipped)' in stdout
  assert skipped == ('wrote 1 window' in lines[0]), (stdout, lines)


@pytest.mark.slow
@pytest.mark.parametrize('extra,first_line', [
    (['--format', 'parquet'], 'error: --format parquet: --watch writes jsonl '
     'or csv; give --format jsonl or --format csv.'),
    (['--watch_interval_secs', '0'], 'python -m pipeline.score: error: '
     'argument --watch_interval_secs: must be more than 0; received 0'),
])
def test_the_command_says_a_usage_error_in_one_line(tmp_path, extra,
                                                    first_line):
  (tmp_path / 'in').mkdir()
  out = run_command('pipeline.score', '--watch', '--input',
                    str(tmp_path / 'in' / '*.jsonl'), '--model',
                    str(tmp_path / 'no-bundle'), '--output',
                    str(tmp_path / 'out'), *extra, timeout=120)
  assert out.returncode == 2, out.stderr
  lines = out.stderr.splitlines()
  assert lines[0] == first_line, out.stderr
  assert len(lines) == 1 or lines[1].startswith('Run python -m pipeline.score')
  assert not (tmp_path / 'out').exists()


# --- --model_updates ----------------------------------------------------------

def test_model_updates_without_watch_is_a_usage_error(tmp_path):
  from pipeline.cli import score  # pylint: disable=import-outside-toplevel
  with pytest.raises(UsageError, match=r'^--model_updates models/\*: bundles '
                     r'are followed by a command that keeps running; add '
                     r'--watch'):
    score.run(['--input', str(tmp_path / '*.jsonl'), '--model', 'bundle',
               '--output', str(tmp_path / 'out'), '--model_updates',
               'models/*'])


class _Scorer:
  """What `BundleUpdates` asks of a scorer: the bundle's outputs and MeCab
  arguments."""
  def __init__(self, path):
    from model.bundle import load_bundle  # pylint: disable=import-outside-toplevel
    bundle = load_bundle(path, check_model=False)
    self.path = path
    self.output_names = bundle.output_names
    self.mecab_args = bundle.mecab_args


def _publish(bundle_path, models, name, *, mtime=None, corrupt=False):
  """A copy of a bundle under ``models/name``, as a publisher writes it."""
  target = models / name
  shutil.copytree(bundle_path, target)
  if corrupt:
    with open(target / 'vocabulary.txt', 'a', encoding='utf-8') as f:
      f.write('余計な単語\n')
  if mtime is not None:
    os.utime(target / 'manifest.json', (mtime, mtime))
  return str(target)


@pytest.mark.slow
def test_bundle_updates_take_new_sound_bundles_and_refuse_others(
    tmp_path, trained_bundle, caplog, capsys):
  from pipeline.cli.model_updates import BundleUpdates  # pylint: disable=import-outside-toplevel
  models = tmp_path / 'models'
  models.mkdir()
  old = _publish(trained_bundle.path, models, 'v0')
  updates = BundleUpdates(str(models / '*'), trained_bundle.path,
                          _Scorer(trained_bundle.path), _Scorer,
                          batch_tokens=1 << 21)
  assert not updates.poll()  # v0 was there at the start: passed over.
  broken = _publish(trained_bundle.path, models, 'v1', corrupt=True)
  with caplog.at_level('WARNING', logger='pipeline.cli.model_updates'):
    assert not updates.poll()
  assert updates.path == trained_bundle.path and updates.refused == 1
  assert [r.getMessage() for r in caplog.records if
          r.levelname == 'WARNING'][0].startswith(f'Refused bundle {broken}: ')
  # Two at once: the newer manifest is taken, even with an old time kept
  # by the copy; the other is passed over.
  good = _publish(trained_bundle.path, models, 'v2', mtime=3000.0)
  _publish(trained_bundle.path, models, 'v3', mtime=2000.0)
  assert updates.poll()
  assert capsys.readouterr().out == (
      f'Bundle {good} scores the windows from now on (was '
      f'{trained_bundle.path}).\n')
  assert (updates.path, updates.scorer.path) == (good, good)
  assert updates.accepted == 1
  # Each directory is looked at once: v1 stays refused, v2 is not taken
  # again.
  assert not updates.poll()
  assert (updates.refused, updates.accepted) == (1, 1)
  assert updates.path != old


@pytest.mark.slow
def test_a_bundle_published_while_it_runs_scores_the_windows_after_it(
    tmp_path, drops, batch_scores, trained_bundle, second_bundle):
  folder, out = str(tmp_path / 'in'), str(tmp_path / 'out')
  models = tmp_path / 'models'
  os.makedirs(folder)
  models.mkdir()
  proc = _start(folder, out, trained_bundle.path, '--model_updates',
                str(models / '*'))
  _put(folder, 'a.jsonl', drops['a.jsonl'][0])
  first = [i for i in drops['a.jsonl'][1] if i is not None]
  _wait_for(proc, lambda: (set(first) <= set(_written_ids(out)[0]) and
                           _errors_beside_scores(out)), 'scored a.jsonl')
  new = _publish(second_bundle.path, models, 'v2')
  time.sleep(3)  # A poll takes it up before the next file.
  _put(folder, 'c.jsonl', drops['c.jsonl'][0])
  after = [i for i in drops['c.jsonl'][1] if i is not None]
  _wait_for(proc, lambda: (set(after) <= set(_written_ids(out)[0]) and
                           _errors_beside_scores(out)), 'scored c.jsonl')
  stdout, stderr, _ = _stop(proc, signal.SIGINT)
  assert proc.returncode == 130, stderr
  # The second bundle's scores, from a batch run with it.
  (tmp_path / 'batch').mkdir()
  second_scores = _batch_run(tmp_path / 'batch',
                             {'c.jsonl': drops['c.jsonl'][0]},
                             second_bundle.path)
  records = []
  for path in glob.glob(os.path.join(out, 'scores-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      records += [json.loads(line) for line in f]
  assert sorted(r['id'] for r in records) == sorted(first + after)
  for record in records:
    assert list(record) == ['id', 'scores', 'n_tokens', 'truncated',
                            'model_id']
    model_id, want = ((trained_bundle.path, batch_scores)
                      if record['id'] in first else (new, second_scores))
    assert record['model_id'] == model_id, record['id']
    assert record['scores'] == pytest.approx(want[record['id']], abs=1e-6)
  assert any(abs(a - b) > 1e-3 for i in after for a, b in
             zip(batch_scores[i], second_scores[i])), 'the bundles differ'
  assert 'Traceback' not in stdout + stderr
  assert f'Bundle {new} scores the windows from now on (was ' \
      f'{trained_bundle.path}).' in stdout.splitlines()


@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_model_id_follows_truncated_in_the_written_records(tmp_path, fmt):
  """The watching command's records with ``model_id``, as each format
  writes them."""
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  from pipeline.cli.job import with_model_id  # pylint: disable=import-outside-toplevel
  from pipeline.io.writers import WriteScores  # pylint: disable=import-outside-toplevel
  record = {'id': 'a', 'scores': [0.5, 1.0], 'n_tokens': 3,
            'truncated': False, 'title': '題'}
  assert list(with_model_id(record, 'models/v2')) == [
      'id', 'scores', 'n_tokens', 'truncated', 'model_id', 'title']
  with beam.Pipeline() as p:
    _ = (p | beam.Create([with_model_id({k: v for k, v in record.items()
                                         if k != 'title'}, 'models/v2')])
         | WriteScores(str(tmp_path), fmt, num_shards=1, model_id=True))
  text = (tmp_path / f'scores-00000-of-00001.{fmt}').read_text('utf-8')
  if fmt == 'jsonl':
    assert json.loads(text) == {'id': 'a', 'scores': [0.5, 1.0],
                                'n_tokens': 3, 'truncated': False,
                                'model_id': 'models/v2'}
  else:
    assert text.splitlines() == ['id,scores,n_tokens,truncated,model_id',
                                 'a,"[0.5, 1.0]",3,false,models/v2']


def test_model_id_is_refused_where_the_format_cannot_take_it(tmp_path):
  from pipeline.io.writers import WriteScores  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="model_id is written to jsonl or csv; "
                     "received 'parquet'"):
    WriteScores(str(tmp_path), 'parquet', model_id=True)
