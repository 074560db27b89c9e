"""The benchmark's corpus, file splitting, measuring and report.

The timings themselves are not tested: only what the benchmark derives from
them and how it writes them.
"""

import glob
import json
import os
import shlex
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import corpus, report, run


def test_corpus_has_the_measured_long_tail(tmp_path):
  path = str(tmp_path / 'corpus.jsonl')
  stats = corpus.make_corpus(path, 600, seed=0)
  assert stats['docs'] == 600
  assert stats['bytes'] == os.path.getsize(path)
  assert 0.75 * corpus.MEDIAN_TOKENS < stats['median'] < 1.25 * corpus.MEDIAN_TOKENS
  assert 0.7 * corpus.P90_TOKENS < stats['p90'] < 1.3 * corpus.P90_TOKENS
  assert 0.01 < stats['over_maxlen'] < 0.08
  # Reproducible: the same seed writes the same file; another seed does not.
  again, other = str(tmp_path / 'again.jsonl'), str(tmp_path / 'other.jsonl')
  corpus.make_corpus(again, 600, seed=0)
  corpus.make_corpus(other, 600, seed=1)
  with open(path, 'rb') as a, open(again, 'rb') as b, open(other, 'rb') as c:
    first = a.read()
    assert first == b.read()
    assert first != c.read()


def test_sentences_come_from_the_example_corpus():
  from examples.make_corpus import TOPICS  # pylint: disable=import-outside-toplevel
  pool = corpus.sentences()
  assert len(pool) == sum(len(t) for t in TOPICS.values())
  assert all(s.endswith('。') for s in pool)


def _read(pattern):
  parts = sorted(glob.glob(pattern))
  lines = []
  for part in parts:
    with open(part, encoding='utf-8') as f:
      lines.append(f.readlines())
  return parts, lines


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(st.characters(blacklist_categories=('Cs',)),
                              max_size=20), min_size=1, max_size=60),
       files=st.integers(1, 60), final_newline=st.booleans(),
       data=st.data())
def test_split_keeps_every_document_once_in_order(tmp_path_factory, texts,
                                                  files, final_newline, data):
  files = min(files, len(texts))
  tmp = tmp_path_factory.mktemp('split')
  lines = [json.dumps({'id': f'd{i}', 'text': t}, ensure_ascii=False) + '\n'
           for i, t in enumerate(texts)]
  raw = ''.join(lines) if final_newline else ''.join(lines)[:-1]
  path = str(tmp / 'corpus.jsonl')
  with open(path, 'w', encoding='utf-8') as f:
    f.write(raw)
  outdir = str(tmp / 'parts')
  # An earlier split into more files in the same folder leaves nothing behind.
  earlier = data.draw(st.integers(files, len(texts)))
  corpus.split_corpus(path, earlier, outdir)
  pattern = corpus.split_corpus(path, files, outdir)
  parts, got = _read(pattern)
  assert len(parts) == files == len(os.listdir(outdir))
  assert [line for part in got for line in part] == lines
  sizes = [len(part) for part in got]
  assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize('files', [0, -1, 4])
def test_split_refuses_impossible_counts(tmp_path, files):
  path = tmp_path / 'corpus.jsonl'
  path.write_text('{"id": "a", "text": "x"}\n' * 3, encoding='utf-8')
  with pytest.raises(ValueError, match=r'3 documents .*corpus\.jsonl'):
    corpus.split_corpus(str(path), files, str(tmp_path / 'parts'))


@pytest.mark.slow
def test_measure_sums_a_process_tree_and_finds_beam_workers():
  # A worker started as Beam's DirectRunner starts them: under ``sh -c``,
  # with the SDK worker module among its arguments; it holds 64 MiB.
  worker = ('import sys, time; x = bytearray(64 << 20); time.sleep(1.5)')
  command = f'{sys.executable} -c {shlex.quote(worker)} {run.SDK_WORKER_MODULE}'
  parent = ('import subprocess; '
            f'subprocess.run({command!r}, shell=True, check=True)')
  result = run.measure([sys.executable, '-c', parent])
  assert result['workers'] == 1
  assert result['processes'] >= 2
  assert result['peak_worker_rss_mb'] > 64 > result['peak_main_rss_mb']
  assert result['peak_rss_mb'] > result['peak_worker_rss_mb']
  assert result['wall_s'] > 1.5


@pytest.mark.slow
def test_measure_finds_workers_forked_by_a_warm_process():
  # As pipeline.local.warm_workers runs them: a ``serve`` process forks the
  # workers, which keep its command line; it is not a worker itself.
  serve = ('import os, time\n'
           'for _ in range(2):\n'
           '  if os.fork() == 0:\n'
           '    x = bytearray(64 << 20); time.sleep(1.5); os._exit(0)\n'
           'os.wait(); os.wait()\n')
  result = run.measure([sys.executable, '-c', serve, run.WARM_MODULE,
                        'serve'])
  assert result['workers'] == 2
  assert result['processes'] == 3
  assert result['peak_worker_rss_mb'] > 64 > result['peak_main_rss_mb']


@pytest.mark.slow
def test_measure_without_workers_counts_the_process_itself():
  result = run.measure([sys.executable, '-c',
                        'import time; x = bytearray(64 << 20); time.sleep(0.5)'])
  assert result['workers'] == 1 and result['processes'] == 1
  assert result['peak_worker_rss_mb'] == result['peak_main_rss_mb']


@pytest.mark.slow
def test_measure_reports_a_failed_command_with_its_stderr():
  with pytest.raises(RuntimeError, match='exit status 3:\n.*went wrong'):
    run.measure([sys.executable, '-c',
                 'import sys; sys.stderr.write("went wrong"); sys.exit(3)'])


def _write_outputs(outdir, shards, errors=()):
  outdir.mkdir()
  for k, ids in enumerate(shards):
    with open(outdir / f'scores-{k:05d}-of-{len(shards):05d}.jsonl', 'w',
              encoding='utf-8') as f:
      for i in ids:
        f.write(json.dumps({'id': i, 'scores': [0.5], 'n_tokens': 3,
                            'truncated': False}) + '\n')
  with open(outdir / 'errors-00000-of-00001.jsonl', 'w', encoding='utf-8') as f:
    f.writelines(json.dumps({'id': i, 'stage': 'read', 'reason': 'x'}) + '\n'
                 for i in errors)


def test_read_scores_gathers_every_shard(tmp_path):
  _write_outputs(tmp_path / 'out', [['c', 'a'], [], ['b']])
  records = run.read_scores(str(tmp_path / 'out'), ['a', 'b', 'c'], 'cmd')
  assert sorted(records) == ['a', 'b', 'c'] and records['a']['n_tokens'] == 3


@pytest.mark.parametrize('shards, errors', [
    ([['a', 'b']], ()), ([['a', 'b'], ['c', 'a']], ()), ([['a', 'b']], ('c',)),
    ([['a', 'b', 'c', 'd']], ())],
                         ids=['missing', 'scored twice', 'an error',
                              'not in the corpus'])
def test_read_scores_refuses_lost_or_doubled_documents(tmp_path, shards,
                                                       errors):
  _write_outputs(tmp_path / 'out', shards, errors)
  with pytest.raises(RuntimeError, match='^cmd wrote .* of 3'):
    run.read_scores(str(tmp_path / 'out'), ['a', 'b', 'c'], 'cmd')


@pytest.mark.parametrize('argv', [
    ['--variants', 'classic,nope'], ['--docs', '0'], ['--repeat', '0'],
    ['--docs', '4', '--files', '1,8']])
def test_cli_refuses_bad_arguments_before_any_work(tmp_path, argv, capsys):
  with pytest.raises(SystemExit):
    run.main(argv + ['--workdir', str(tmp_path / 'w')])
  assert '--' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'w')


def test_a_rebuilt_model_forgets_the_classic_scores_of_the_last(tmp_path):
  kept = ['corpus_8000.jsonl', 'ours_1w_8000_1f.npy', 'classic.h5',
          'bundle']
  stale = ['classic_2000_1f.npy', 'classic_2000_1f.ids', 'classic_8000_1f.json']
  for name in kept + stale:
    (tmp_path / name).write_text('x', 'utf-8')
  removed = run.forget_classic_scores(str(tmp_path))
  assert sorted(os.path.basename(p) for p in removed) == sorted(stale)
  assert sorted(os.listdir(tmp_path)) == sorted(kept)
  # Without the reference, a run reports no difference.
  assert run._max_diff(str(tmp_path / 'ours_1w_8000_1f'),  # pylint: disable=protected-access
                       str(tmp_path / 'classic_8000_1f')) is None


def _rows():
  """One made-up run: 2 sizes, the scorer from 1 and 8 files."""
  spec = [  # variant, docs, files, workers, seconds, start-up
      ('classic', 2000, 1, 1, 26.0, 6.0), ('classic', 8000, 1, 1, 86.0, 6.0),
      ('ours_1w', 8000, 1, 1, 35.0, 5.0), ('ours_1w', 8000, 8, 1, 37.0, 5.0),
      ('ours_2w', 8000, 1, 2, 20.0, 8.0), ('ours_2w', 8000, 8, 2, 21.0, 5.0),
      ('ours_default', 2000, 1, 2, 8.0, 6.0),
      ('ours_default', 8000, 1, 2, 17.2, 5.2),
      ('floor_mecab', 8000, 1, 1, 10.0, None),
      ('floor_model', 8000, 1, 1, 9.0, None),
      ('beam_stock', 2000, 1, 1, 3.0, 4.0)]  # Faster than its start-up.
  rows = []
  for variant, docs, files, workers, seconds, startup in spec:
    rows.append({'variant': variant, 'docs': docs, 'files': files,
                 'workers': workers, 'seconds': seconds, 'startup_s': startup,
                 'real_tokens': 1000 * docs, 'padded_tokens': (
                     8000 * docs if variant == 'classic' else None),
                 'peak_rss_mb': 900.0 * workers, 'peak_main_rss_mb': 700.0,
                 'peak_worker_rss_mb': 800.0 if workers > 1 else None,
                 'max_diff': 0.0 if variant != 'floor_mecab' else None})
  return report.derive(rows)


def test_derive_takes_start_up_out_and_compares_with_classic():
  at = {(r['variant'], r['docs'], r['files']): r for r in _rows()}
  two = at[('ours_2w', 8000, 1)]
  assert two['docs_per_s'] == pytest.approx(8000 / 20.0)
  assert two['steady_docs_per_s'] == pytest.approx(8000 / 12.0)
  assert two['steady_tokens_per_s'] == pytest.approx(8000_000 / 12.0)
  assert two['padded_tokens_per_s'] is None
  assert two['ratio'] == pytest.approx((8000 / 20.0) / (8000 / 86.0))
  assert two['steady_ratio'] == pytest.approx((8000 / 12.0) / (8000 / 80.0))
  stock = at[('beam_stock', 2000, 1)]
  assert stock['steady_docs_per_s'] is None and stock['steady_ratio'] is None
  assert at[('floor_model', 8000, 1)]['steady_docs_per_s'] is None


def test_report_shows_scaling_speedup_steady_state_and_per_worker(tmp_path):
  rows = _rows()
  corpora = {'2000': {'docs': 2000, 'tokens': 1, 'median': 750, 'p90': 4200,
                      'p99': 18000, 'over_maxlen': 0.04, 'bytes': 2**21}}
  text = report.write_report(rows, corpora, str(tmp_path), 'test machine',
                             'python -m bench.run --docs 2000,8000')
  with open(tmp_path / 'results.md', encoding='utf-8') as f:
    assert f.read() == text
  assert '`python -m bench.run --docs 2000,8000`' in text
  assert 'median of' not in text  # One round.
  assert '| 2000 | 2000 | 2.0 | 1 | 750 |' in text
  # The main table: wall, start-up, docs/s, steady docs/s...
  assert '| ours_2w | 8000 | 1 | 2 | 20.0 | 8.0 | 400.0 | 666.7 |' in text
  # Per worker: steady docs/s and tokens/s halved; the worker's RSS.
  assert '| ours_2w | 8000 | 8 | 2 | 250.0 | 250000 | 800 | 700 |' in text
  assert '| ours_1w | 8000 | 1 | 1 | 266.7 | 266667 | 700 | 700 |' in text
  # (a) 2 workers / 1 from each file count, whole and steady.
  assert ('(a) 2 workers / 1 worker, 8000 documents from 1 file(s): 1.75x '
          'whole process, 2.50x steady state (target >= 1.7x)') in text
  assert '8000 documents from 8 file(s): 1.76x whole process, 2.00x' in text
  # (b) the default against classic, with the target for each size.
  assert ('(b) default `pipeline.score` (2 worker(s)), 2000 documents: '
          '3.25x') in text and '(target >= 3x)' in text
  assert '8000 documents: 5.00x' in text and '(target >= 5x)' in text
  assert ('scores at 8000 documents: largest absolute difference from the '
          'classic script over 6 runs 0.00e+00') in text


def test_report_puts_each_engine_beside_the_direct_runner_default(tmp_path):
  rows = _rows()
  for docs, seconds in ((2000, 30.0), (8000, 50.0)):
    rows.append({'variant': 'flink_cluster', 'docs': docs, 'files': 1,
                 'workers': 2, 'seconds': seconds, 'startup_s': 20.0,
                 'real_tokens': 1000 * docs, 'scored_by': 2})
  rows = report.derive(rows)
  engines = {e['docs']: e for e in report.engine_rows(rows)}
  large = engines[8000]
  assert large['steady'] == pytest.approx(8000 / 30.0)
  assert large['base_steady'] == pytest.approx(8000 / 12.0)
  assert large['steady_ratio'] == pytest.approx(12.0 / 30.0)
  # Marginal: 6,000 documents more in 20 s more, against 9.2 s more.
  assert large['marginal'] == pytest.approx(6000 / 20.0)
  assert large['base_marginal'] == pytest.approx(6000 / 9.2)
  assert large['marginal_ratio'] == pytest.approx(9.2 / 20.0)
  assert engines[2000]['marginal'] is None  # Only on the largest corpus.
  text = report.write_report(rows, {}, str(tmp_path), 'test machine')
  assert ('| flink_cluster | 8000 | 1 | 20.0 | 266.7 | 666.7 | 0.40x | 300.0 '
          '| 652.2 | 0.46x | 2 |') in text
  assert ('(c) flink_cluster / ours_default, 8000 documents from 1 file(s): '
          '0.40x steady state, 0.46x marginal (target >= 0.8x)') in text
  # Without engine rows, no engine table.
  assert 'Engines against' not in report.write_report(
      _rows(), {}, str(tmp_path), 'test machine')


@settings(max_examples=60, deadline=None)
@given(seconds=st.lists(st.floats(1, 1000), min_size=1, max_size=7),
       data=st.data())
def test_median_of_rounds_keeps_the_median_run_and_every_round(seconds, data):
  startups = data.draw(st.lists(st.floats(1, 30), min_size=len(seconds),
                                max_size=len(seconds)))
  runs = [{'seconds': s, 'startup_s': u, 'max_diff': i * 1e-7, 'round': i}
          for i, (s, u) in enumerate(zip(seconds, startups))]
  chosen = run._median_of_rounds(runs)  # pylint: disable=protected-access
  order = sorted(seconds)
  assert chosen['seconds'] == order[(len(order) - 1) // 2]
  assert runs[chosen['round']]['seconds'] == chosen['seconds']
  if len(runs) == 1:
    assert 'round_seconds' not in chosen and chosen['startup_s'] == startups[0]
  else:
    assert chosen['round_seconds'] == seconds  # In round order.
    assert chosen['round_startup_s'] == startups
    assert chosen['startup_s'] == sorted(startups)[(len(startups) - 1) // 2]
    assert chosen['max_diff'] == (len(runs) - 1) * 1e-7
  assert runs[chosen['round']] is not chosen  # The runs are left as they were.


def test_report_gives_target_a_round_by_round(tmp_path):
  rows = _rows()
  for r in rows:
    if r['variant'] in ('ours_1w', 'ours_2w') and r['files'] == 1:
      r['round_seconds'] = ([36.0, 35.0, 30.0] if r['variant'] == 'ours_1w'
                            else [20.0, 20.0, 20.0])
  text = report.write_report(rows, {}, str(tmp_path), 'test machine')
  assert 'Each row is the median of 3 rounds' in text
  assert ('8000 documents from 1 file(s): 1.75x whole process, 2.50x steady '
          'state (target >= 1.7x); round by round 1.80x, 1.75x, 1.50x') in text
  assert 'from 8 file(s): 1.76x whole process, 2.00x steady state (target ' \
      '>= 1.7x)\n' in text


def test_plot_handles_every_variant_and_missing_values(tmp_path):
  pytest.importorskip('matplotlib')  # The plot needs the [bench] extra.
  for rows in (_rows(), [r for r in _rows() if r['variant'] == 'classic']):
    png = report.plot(rows, str(tmp_path))
    with open(png, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_recorded_command_names_no_folder_of_the_machine():
  from bench import run
  argv = ['--workdir', os.path.join(run.ROOT, 'bench', 'work'),
          '--results', os.path.join(os.sep, 'elsewhere', 'results'),
          '--docs', '8']
  assert run._portable(argv) == [  # pylint: disable=protected-access
      '--workdir', os.path.join('bench', 'work'), '--results', 'results',
      '--docs', '8']


def test_scored_by_counts_the_workers_that_scored(tmp_path):
  assert run.scored_by(str(tmp_path)) is None  # no summary
  (tmp_path / '_SUMMARY.json').write_text(json.dumps(
      {'scored_by_worker': {'h:1': 40, 'h:2': 0, 'h:3': 2}}), 'utf-8')
  assert run.scored_by(str(tmp_path)) == 2


def test_start_ups_are_kept_by_command_and_engines_by_name():
  """Rounds find their start-up under the same key: an engine's cluster
  flags (its ports) change each round, its key does not."""
  flink = run.startup_key('flink_cluster', 1, ['--flink_master', 'h:1'])
  assert flink == run.startup_key('flink_cluster', 1,
                                  ['--flink_master', 'h:2'])
  assert flink != run.startup_key('spark_cluster', 1, [])
  assert flink != run.startup_key('flink_cluster', 8, [])
  two = ['--direct_num_workers', '2']
  assert (run.startup_key('ours_default', 1, two) !=
          run.startup_key('ours_default', 1, []))
  assert run.startup_key('classic', 8, two) == run.startup_key('classic', 1,
                                                                [])


def test_engines_run_only_when_named():
  assert not set(run.ENGINE_CLUSTERS) & set(run.DEFAULT_VARIANTS)
  assert set(run.ENGINE_CLUSTERS) <= set(run.VARIANTS) & set(run.SCORE_FLAGS)
  assert set(run.ENGINE_CLUSTERS) == set(report.ENGINE_VARIANTS)
  for variant in ('ours_default', 'classic'):
    with run.engine(variant, '/nonexistent') as flags:
      assert flags is None  # No cluster started.


@pytest.mark.slow
def test_latency_benchmark_measures_every_document(trained_bundle, tmp_path,
                                                   capsys):
  """``python -m bench.latency`` on a tiny stream: each setting's row counts
  every document, with its wait percentiles in order."""
  from bench import latency  # pylint: disable=import-outside-toplevel
  latency.main(['--docs_per_sec', '40', '--secs', '0.5', '--model',
                trained_bundle.path, '--workdir', str(tmp_path),
                '--max_batch_duration_secs', '0.2'])
  rows = [line.split('|')[1:-1] for line in capsys.readouterr().out.splitlines()
          if line.startswith('| ') and line.rstrip().endswith(' s |')]
  assert [r[0].strip() for r in rows] == ['None', '0.2']
  for row in rows:
    assert int(row[1]) == 20
    waits = [float(cell.strip().rstrip(' s')) for cell in row[2:6]]
    assert 0 <= waits[0] <= waits[1] <= waits[2] <= waits[3]
