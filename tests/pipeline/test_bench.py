"""The benchmark's corpus and report (the timings themselves are not tested)."""

import os

import pytest

from pipeline import bench


def test_corpus_has_the_measured_long_tail(tmp_path):
  path = str(tmp_path / 'corpus.jsonl')
  stats = bench.make_corpus(path, 600, seed=0)
  assert stats['docs'] == 600
  assert 0.75 * bench.MEDIAN_TOKENS < stats['median'] < 1.25 * bench.MEDIAN_TOKENS
  assert 0.7 * bench.P90_TOKENS < stats['p90'] < 1.3 * bench.P90_TOKENS
  assert 0.01 < stats['over_maxlen'] < 0.08
  # Reproducible: the same seed writes the same file.
  again = str(tmp_path / 'again.jsonl')
  bench.make_corpus(again, 600, seed=0)
  with open(path, 'rb') as a, open(again, 'rb') as b:
    assert a.read() == b.read()


def test_report_and_plot(tmp_path):
  rows = []
  for variant, scale, seconds in (('classic', 1, 10.0), ('ours_inprocess', 1, 2.5),
                                  ('ours_inprocess', 4, 9.0)):
    docs = 100 * scale
    rows.append({'variant': variant, 'scale': scale, 'docs': docs,
                 'seconds': seconds, 'docs_per_s': docs / seconds,
                 'real_tokens_per_s': 1000.0, 'padded_tokens_per_s': 2000.0,
                 'peak_rss_mb': 900.0, 'max_diff': 0.0 if scale == 1 else None,
                 'ratio': (docs / seconds) / 10.0 if scale == 1 else None})
  corpora = {1: {'docs': 100, 'tokens': 1, 'median': 750, 'p90': 4200,
                 'p99': 18000, 'over_maxlen': 0.04}}
  text = bench.write_report(rows, corpora, str(tmp_path), 'test machine')
  assert '| ours_inprocess | 1x | 40.0 |' in text and '4.00x' in text
  assert os.path.exists(os.path.join(str(tmp_path), 'results.md'))


def test_plot(tmp_path):
  pytest.importorskip('matplotlib')  # the plot needs the [bench] extra
  rows = [{'variant': v, 'scale': 1, 'docs': 100, 'seconds': 2.0,
           'docs_per_s': 50.0, 'peak_rss_mb': 900.0}
          for v in ('classic', 'ours_inprocess', 'floor_model')]
  png = bench.plot(rows, str(tmp_path))
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
