"""ScoreDocuments on dicts and Rows, run with TestPipeline: ETL in, ETL out."""

import glob
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.dataframe.convert import to_dataframe, to_pcollection
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.typehints import schemas

from tests.conftest import mixed_length_texts
from transforms import ScoreDocuments


def _check(pcoll_check):
  def check(actual):
    pcoll_check(list(actual))
  return check


def _articles(corpus):
  """Records with several fields, the texts from one word to over maxlen."""
  texts = mixed_length_texts(corpus) + ['']
  return [{'id': f'art-{i:03d}', 'title': f'見出し{i}',
           'url': f'https://example.com/{i}', 'views': i * 10, 'text': text}
          for i, text in enumerate(texts)]


@pytest.mark.slow
def test_same_scores_whatever_the_form(trained_bundle, corpus):
  """Pairs, dicts, Rows and score columns give exactly the same numbers."""
  articles = _articles(corpus)
  names = trained_bundle.output_names
  forms = {
      'pair': ([(a['id'], a['text']) for a in articles], {}),
      'dict': (articles, {'id_field': 'id'}),
      'row': ([beam.Row(**a) for a in articles], {'id_field': 'id'}),
      'columns': (articles, {'scores_as': 'columns'}),
  }

  def numbers(record):
    record = record if isinstance(record, dict) else record.as_dict()
    scores = (record['scores'] if 'scores' in record else
              [record[name] for name in names])
    return record['id'], (tuple(scores), record['n_tokens'],
                          record['truncated'])

  with TestPipeline() as p:
    tagged = []
    for form, (inputs, kwargs) in forms.items():
      scores, errors = (
          p | f'Create{form}' >> beam.Create(inputs)
          | f'Score{form}' >> ScoreDocuments(trained_bundle.path, **kwargs))
      assert_that(errors, equal_to([]), label=f'NoErrors{form}')
      tagged.append(scores | f'Numbers{form}' >> beam.Map(
          lambda r, form=form: (form, numbers(r))))

    def check(items):
      by_form = {form: {} for form in forms}
      for form, (doc_id, value) in items:
        by_form[form][doc_id] = value
      pair = by_form['pair']
      assert set(pair) == {a['id'] for a in articles}
      assert any(truncated for _, _, truncated in pair.values())
      for form in forms:
        assert by_form[form] == pair, form  # exactly equal, not close
    assert_that(tagged | beam.Flatten() | beam.combiners.ToList(),
                _check(lambda lists: check(lists[0])), label='SameNumbers')


def test_records_come_back_whole(trained_bundle, corpus):
  articles = _articles(corpus)[:6]
  rows = [beam.Row(**a) for a in articles]
  with TestPipeline() as p:
    from_dicts, _ = (p | 'Dicts' >> beam.Create(articles)
                     | 'ScoreDicts' >> ScoreDocuments(trained_bundle.path))
    from_rows, _ = (p | 'Rows' >> beam.Create(rows)
                    | 'ScoreRows' >> ScoreDocuments(trained_bundle.path,
                                                    scores_as='columns'))
    added = ['scores', 'n_tokens', 'truncated']
    columns = trained_bundle.output_names + ['n_tokens', 'truncated']

    def check_dicts(records):
      assert sorted(({k: r[k] for k in r if k not in added}
                     for r in records), key=lambda r: r['id']) == articles
      assert all(list(r)[-3:] == added for r in records)

    def check_rows(records):
      assert all(isinstance(r, beam.Row) for r in records)
      got = sorted((r.as_dict() for r in records), key=lambda r: r['id'])
      assert [{k: r[k] for k in r if k not in columns} for r in got] == (
          articles)
      assert all(list(r)[-len(columns):] == columns for r in got)
    assert_that(from_dicts, _check(check_dicts), label='CheckDicts')
    assert_that(from_rows, _check(check_rows), label='CheckRows')

  # The scored rows carry a Beam schema: the input's fields, then the scores.
  fields = schemas.named_fields_from_element_type(from_rows.element_type)
  assert [name for name, _ in fields] == list(articles[0]) + columns


# Beam computes the mean of an empty proxy frame while building the graph.
@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')
def test_scored_rows_feed_beam_dataframe_and_parquet(trained_bundle, corpus,
                                                     tmp_path):
  """No schema written by hand downstream: beam.dataframe and WriteToParquet."""
  articles = _articles(corpus)
  names = trained_bundle.output_names
  out = str(tmp_path / 'scored')
  with TestPipeline() as p:
    rows = p | beam.Create([beam.Row(**a) for a in articles])
    by_column, _ = rows | 'ScoreColumns' >> ScoreDocuments(
        trained_bundle.path, scores_as='columns')
    as_list, _ = rows | 'ScoreList' >> ScoreDocuments(trained_bundle.path)
    _ = as_list | beam.io.WriteToParquet(out, file_name_suffix='.parquet')

    # Keep the articles whose first score is over the mean, in pandas terms.
    df = to_dataframe(by_column)
    kept = df[df[names[0]] > df[names[0]].mean()][['id', 'title',
                                                     names[0]]]
    from_df = to_pcollection(kept, include_indexes=False)

    # The same selection without beam.dataframe, from the same scored rows.
    def over_mean(records):
      mean = float(np.mean([getattr(r, names[0]) for r in records]))
      return sorted((r.id, r.title, getattr(r, names[0])) for r in records
                    if getattr(r, names[0]) > mean)
    by_hand = (by_column | beam.combiners.ToList()
               | 'OverMean' >> beam.Map(over_mean))
    from_df_list = (from_df | 'Tuples' >> beam.Map(tuple)
                    | 'DfList' >> beam.combiners.ToList()
                    | 'Sort' >> beam.Map(sorted))

    def check(pairs):
      [(df_rows, hand_rows)] = pairs
      assert df_rows == hand_rows
      assert 0 < len(df_rows) < len(articles)
    both = from_df_list | 'Pair' >> beam.Map(
        lambda df_rows, hand_rows: (df_rows, hand_rows),
        hand_rows=beam.pvalue.AsSingleton(by_hand))
    assert_that(both, _check(check), label='DfMatches')

  import pyarrow.parquet as pq
  [path] = glob.glob(out + '*.parquet')
  table = pq.read_table(path)
  assert table.column_names == list(articles[0]) + ['scores', 'n_tokens',
                                                   'truncated']
  assert table.num_rows == len(articles)
  assert all(len(s) == len(names) for s in table.column('scores').to_pylist())
  assert sorted(table.column('views').to_pylist()) == [a['views']
                                                       for a in articles]


def test_failed_records_go_to_errors_whole_and_can_be_fed_again(
    trained_bundle):
  good = {'id': 'ok', 'title': 'よい', 'text': '猫が好きです。'}
  bad = [
      ({'id': 'notext', 'title': '本文なし'}, 'extract',
       "no field 'text' (text_field); its fields are ['id', 'title']"),
      ({'title': 'idなし', 'text': '犬'}, 'extract', "no field 'id'"),
      ({'id': 'null', 'title': 'null', 'text': None}, 'segment',
       'received NoneType'),
      ({'id': 'nul', 'title': 'NUL', 'text': '前半\x00後半'}, 'segment',
       'NUL character'),
      ({'id': 'clash', 'text': '猫', 'scores': [1]}, 'extract',
       "already has the field(s) ['scores']"),
  ]
  inputs = [good] + [record for record, _, _ in bad]
  with TestPipeline() as p:
    scores, errors = (p | beam.Create(inputs)
                      | ScoreDocuments(trained_bundle.path, id_field='id'))

    def check_errors(records):
      assert len(records) == len(bad)
      by_record = {json.dumps(r['record'], ensure_ascii=False,
                              sort_keys=True): r for r in records}
      for record, stage, fragment in bad:
        err = by_record[json.dumps(record, ensure_ascii=False,
                                   sort_keys=True)]
        assert err['stage'] == stage and fragment in err['reason']
        assert err['id'] == record.get('id')
        json.dumps(err)  # a dead-letter file can hold it
    assert_that(errors, _check(check_errors), label='Errors')
    assert_that(scores | beam.Map(lambda r: r['id']), equal_to(['ok']),
                label='Scored')

    # Repair the records whose text was missing and score them again.
    repaired = (errors
                | beam.Filter(lambda e: e['stage'] == 'segment' or
                              'text_field' in e['reason'])
                | beam.Map(lambda e: {**e['record'], 'text': '直した本文です。'}))
    rescored, again = repaired | 'Rescore' >> ScoreDocuments(
        trained_bundle.path, id_field='id')
    assert_that(rescored | 'RescoredIds' >> beam.Map(lambda r: r['id']),
                equal_to(['notext', 'null', 'nul']), label='Rescored')
    assert_that(again, equal_to([]), label='NoErrorsAgain')


def _fail_on_marker(marker_id):
  def inference_fn(model, padded):
    if (padded == marker_id).any():
      raise RuntimeError('injected inference failure')
    return model.predict(padded)
  return inference_fn


def test_a_failed_batch_sends_whole_rows_to_errors(trained_bundle, corpus):
  bundle = trained_bundle
  marker = bundle.vocabulary.tokens[-1]
  rows = [beam.Row(id=d['id'], text=d['text'], n=i)
          for i, d in enumerate(corpus[:20])]
  rows.append(beam.Row(id='poison', text=marker, n=-1))
  with TestPipeline() as p:
    scores, errors = (
        p | beam.Create(rows)
        | ScoreDocuments(bundle.path, id_field='id',
                         batch_tokens=bundle.maxlen,
                         inference_fn=_fail_on_marker(bundle.vocabulary.size)))

    def check_errors(records):
      poison = [r for r in records if r['id'] == 'poison']
      assert poison and poison[0]['record'] == {'id': 'poison',
                                                'text': marker, 'n': -1}
      assert all(r['stage'] == 'inference' for r in records)
      assert all(r['record']['id'] == r['id'] for r in records)

    ids = ((scores | 'ScoredIds' >> beam.Map(lambda r: r.id),
            errors | 'ErrorIds' >> beam.Map(lambda r: r['record']['id']))
           | beam.Flatten())
    assert_that(errors, _check(check_errors), label='Errors')
    assert_that(ids, equal_to([r.id for r in rows]), label='NothingLost')


def test_rows_without_the_text_field_fail_before_the_pipeline_runs(
    trained_bundle):
  p = TestPipeline()
  rows = p | beam.Create([beam.Row(id='a', body='猫')])
  with pytest.raises(ValueError, match=r"text_field='text'.*\['id', 'body'\]"):
    _ = rows | ScoreDocuments(trained_bundle.path, validate=False)


def test_unknown_scores_as_is_refused(trained_bundle):
  with pytest.raises(ValueError, match="scores_as must be one of"):
    ScoreDocuments(trained_bundle.path, scores_as='table', validate=False)


def test_score_fields_describe_the_added_fields(trained_bundle):
  names = trained_bundle.output_names
  as_list = ScoreDocuments(trained_bundle.path, validate=False)
  columns = ScoreDocuments(trained_bundle.path, scores_as='columns',
                           validate=False)
  assert [n for n, _ in as_list.score_fields] == ['scores', 'n_tokens',
                                                  'truncated']
  assert [n for n, _ in columns.score_fields] == names + ['n_tokens',
                                                          'truncated']
  assert columns.output_names == names
