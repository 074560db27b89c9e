"""The ETL example runs: CSV in, scored and filtered Parquet out, errors kept."""

import csv
import glob
import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

from model.text import Segmenter, truncate
from tests.conftest import ROOT
from transforms.handler import BundleModelHandler

ARTICLES = ROOT / 'examples' / 'articles.csv'
SCORE = 'score_1'


def _load_example():
  name = 'examples_etl_filter'
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        name, ROOT / 'examples' / 'etl_filter.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so Beam can pickle its functions by name
    spec.loader.exec_module(module)
  return sys.modules[name]


def _reference_scores(bundle, texts):
  """Each text's scores outside Beam, batched as the handler batches."""
  segmenter = Segmenter(bundle.mecab_args)
  ids = []
  for text in texts:
    found, _ = bundle.vocabulary.lookup(
        bundle.tokenizer.words(segmenter.segment(text)))
    ids.append(truncate(found, bundle.maxlen, bundle.truncating))
  handler = BundleModelHandler(bundle.path)
  results = handler.run_inference(ids, handler.load_model())
  return [np.asarray(r.inference, dtype=float) for r in results]


def _read_csv(path):
  with open(path, encoding='utf-8', newline='') as f:
    return list(csv.DictReader(f))


def test_the_etl_example_keeps_the_rows_over_the_threshold(trained_bundle,
                                                           tmp_path):
  import pyarrow.parquet as pq
  example = _load_example()
  articles = _read_csv(ARTICLES)
  assert len(articles) >= 10 and len(articles[0]) >= 5
  index = trained_bundle.output_names.index(SCORE)
  reference = {a['id']: s[index] for a, s in zip(
      articles, _reference_scores(trained_bundle,
                                  [a['text'] for a in articles]))}
  # A threshold in the widest gap around the middle: some rows pass, some not.
  values = sorted(reference.values())
  middle = range(len(values) // 4, 3 * len(values) // 4)
  i = max(middle, key=lambda i: values[i + 1] - values[i])
  threshold = (values[i] + values[i + 1]) / 2
  expected = {k for k, v in reference.items() if v > threshold}
  assert 0 < len(expected) < len(articles)

  # One row the scorer cannot take (no text) must end in the errors.
  source = tmp_path / 'articles.csv'
  shutil.copy(ARTICLES, source)
  with open(source, 'a', encoding='utf-8') as f:
    f.write('art-999,本文のない記事,https://example.com/empty,2024-03-20,\n')
  out = str(tmp_path / 'out' / 'articles')
  example.run([f'--model={trained_bundle.path}', f'--input={source}',
               f'--output={out}', f'--score={SCORE}',
               f'--threshold={threshold}'])

  [path] = glob.glob(out + '-*-of-*.parquet')
  table = pq.read_table(path)
  columns = list(articles[0]) + trained_bundle.output_names + [
      'n_tokens', 'truncated']
  assert table.column_names == columns
  rows = {r['id']: r for r in table.to_pylist()}
  assert set(rows) == expected
  for article in articles:
    if article['id'] in rows:
      row = rows[article['id']]
      assert {k: row[k] for k in article} == article  # every column as read
      assert row[SCORE] == pytest.approx(reference[article['id']], abs=1e-5)
      assert row['n_tokens'] > 0

  [errors_path] = glob.glob(out + '-errors-*.jsonl')
  with open(errors_path, encoding='utf-8') as f:
    errors = [json.loads(line) for line in f]
  assert [(e['id'], e['stage']) for e in errors] == [('art-999', 'segment')]
  assert errors[0]['record']['title'] == '本文のない記事'


def test_the_etl_example_names_the_outputs_of_a_wrong_score(trained_bundle,
                                                           tmp_path):
  example = _load_example()
  with pytest.raises(ValueError, match=r"--score 'nope'.*'score_0'"):
    example.run([f'--model={trained_bundle.path}', f'--input={ARTICLES}',
                 f'--output={tmp_path}/out', '--score=nope'])
