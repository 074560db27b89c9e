"""ETL example: score a CSV of articles, keep those over a threshold, write Parquet.

Shows ``ScoreDocuments`` inside an ETL pipeline: the records keep every
column they came with, gain one float column per bundle output, and their
Beam schema (from ``ReadFromCsv``) carries through, so ``WriteToParquet``
derives the Parquet schema without one written by hand. No join by id: each
row rides through the scorer whole.

Run it (needs ``pip install -e '.[etl]'`` for ``ReadFromCsv``)::

  python examples/etl_filter.py --model bundles/example \\
      --input examples/articles.csv --output out/etl/articles \\
      --score score_1 --threshold 0.2

Writes ``OUTPUT-SSSSS-of-NNNNN.parquet``: the articles whose ``--score`` is
over ``--threshold``, with all their columns plus ``n_tokens``, ``truncated``
and the scores; and ``OUTPUT-errors-SSSSS-of-NNNNN.jsonl``: the rows that
could not be scored, each with the whole row under ``record``. Any Beam
runner flag works as in `pipeline.score`.
"""

import argparse
import json
import logging
import sys
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import ScoreDocuments

_LOGGER = logging.getLogger(__name__)


def parse_args(argv: Optional[Sequence[str]]
               ) -> tuple[argparse.Namespace, list[str]]:
  """Splits ``argv`` into the example's options and Beam's.

  Like Beam's own examples, this parses its options with ``argparse`` and
  leaves the rest (runner flags) to ``PipelineOptions``: a
  ``PipelineOptions`` subclass would clash with ``pipeline.score``'s
  ``--input`` and ``--model`` in a process that imports both.
  """
  parser = argparse.ArgumentParser(
      description='Score a CSV of articles, keep those over a threshold on '
      'one score, and write them as Parquet with all their columns.')
  parser.add_argument('--input', required=True,
                      help='CSV file pattern with a header row')
  parser.add_argument('--model', required=True, help='bundle directory')
  parser.add_argument('--output', required=True,
                      help='prefix of the Parquet shards (any Beam '
                      'filesystem)')
  parser.add_argument('--score', required=True,
                      help='the bundle output to filter on (a name from the '
                      'bundle manifest, e.g. score_1)')
  parser.add_argument('--threshold', type=float, default=0.5,
                      help='keep the rows whose score is over this')
  parser.add_argument('--text_field', default='text',
                      help='the column holding the text')
  parser.add_argument('--id_field', default='id',
                      help='the column naming a row in the errors')
  return parser.parse_known_args(argv)


def _over(row: Any, score: str, threshold: float) -> bool:
  return getattr(row, score) > threshold


def _to_json(error: dict) -> str:
  # CSV values can be numpy numbers; str() keeps them readable.
  return json.dumps(error, ensure_ascii=False, default=str)


def build(pipeline: beam.Pipeline, opts: argparse.Namespace,
          scorer: ScoreDocuments) -> None:
  """Adds the read, score, filter and write steps to ``pipeline``."""
  articles = pipeline | 'ReadCsv' >> beam.io.ReadFromCsv(opts.input)
  scored, errors = articles | 'ScoreArticles' >> scorer
  kept = (
      scored
      | 'OverThreshold' >> beam.Filter(
          _over, opts.score, opts.threshold).with_output_types(
              scored.element_type))
  _ = kept | 'WriteParquet' >> beam.io.WriteToParquet(
      opts.output, file_name_suffix='.parquet')
  _ = (errors | 'ErrorsToJson' >> beam.Map(_to_json)
       | 'WriteErrors' >> beam.io.WriteToText(
           f'{opts.output}-errors', file_name_suffix='.jsonl'))


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None):
  """Builds and runs the example; returns the PipelineResult.

  Raises:
    ValueError: ``--score`` is not an output of the bundle.
    SystemExit: a required option is missing (argparse's message).
  """
  opts, beam_args = parse_args(argv)
  options = PipelineOptions(beam_args)
  scorer = ScoreDocuments(opts.model, text_field=opts.text_field,
                          id_field=opts.id_field, scores_as='columns')
  if opts.score not in scorer.output_names:
    raise ValueError(
        f'--score {opts.score!r} is not an output of the bundle '
        f'{opts.model}; its outputs are {scorer.output_names}.')
  pipeline = test_pipeline or beam.Pipeline(options=options)
  build(pipeline, opts, scorer)
  result = pipeline.run()
  result.wait_until_finish()
  return result


if __name__ == '__main__':
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  try:
    run(sys.argv[1:])
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
