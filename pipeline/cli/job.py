"""The scoring job: read, score, keep fields, write, count.

Why this module exists: the command builds its job here from its options,
and so can a pipeline that runs the same job under its own runner (tests,
ETL): `build` adds every step to a pipeline, `make_scorer` and
`load_scorer` make its `ScoreDocuments`.
"""

from typing import Any, Optional, Sequence

import apache_beam as beam

from model.bundle import BundleError
from pipeline import progress
from pipeline.cli.preflight import UsageError
from pipeline.io import kept
from pipeline.io.outdir import ERRORS_PREFIX, SCORES_PREFIX
from pipeline.io.readers import ReadCorpus, ReadMatchedFiles
from pipeline.io.writers import WriteErrors, WriteScores, score_fields
from pipeline.local import scaling
from transforms import ScoreDocuments
from transforms.handler import TFThreads
from transforms.records import MODEL_ID_FIELD


def _keep_fields(scores, opts: Any, keep_fields: list[str]):
  """The score records with their kept fields, fitted to the output's columns.

  Returns:
    ``(records, misfits, columns)``: the records to write, the records whose
    kept fields the CSV/Parquet columns cannot hold (errors at stage
    ``write``, or None), and those columns (None for JSONL).
  """
  records = scores | 'KeepFields' >> beam.Map(
      kept.output_record, id_field=opts.id_field, keep_fields=keep_fields,
      keep_all_fields=opts.keep_all_fields)
  if opts.output_format == 'jsonl':
    return records, None, None
  columns = kept.infer_columns(
      opts.input, opts.input_format, id_field=opts.id_field,
      text_field=opts.text_field, keep_fields=keep_fields,
      keep_all_fields=opts.keep_all_fields, outdir=opts.output)
  if opts.output_format == 'tfrecord' or (
      opts.output_format == 'csv' and not opts.keep_all_fields):
    # TFRecord writes any field; CSV text takes any value of known names.
    return records, None, columns
  records, misfits = records | 'FitKeptColumns' >> beam.ParDo(
      kept.FitColumns(columns, opts.output_format)).with_outputs(
          kept.FitColumns.ERRORS, main='records')
  return records, misfits, columns


def _keeps(opts: Any) -> bool:
  return bool(getattr(opts, 'keep_fields', None) or
              getattr(opts, 'keep_all_fields', False))


def build(pipeline: beam.Pipeline, opts: Any,
          scorer: Optional[ScoreDocuments] = None,
          plan: Optional[scaling.Plan] = None, *,
          files: Optional[Sequence[Any]] = None,
          names: tuple[str, str] = (SCORES_PREFIX, ERRORS_PREFIX),
          model_id: Optional[str] = None) -> None:
  """Adds the read, score and write steps to ``pipeline``.

  Args:
    pipeline: the pipeline.
    opts: the command's options (`ScoreOptions` or `parse_args`' namespace).
    scorer: the `ScoreDocuments` to use (built from ``opts`` if not given).
    plan: how the job spreads (`pipeline.local.scaling.plan`; made from ``opts``
      and the pipeline's options if not given).
    files: the ``FileMetadata`` of the files to read, already matched (the
      watching command, `pipeline.cli.watch`); None: every file ``--input``
      matches.
    names: the names of the score and error shards, before
      ``-SSSSS-of-NNNNN``.
    model_id: the bundle path each score record carries as ``model_id``
      (after ``truncated``), where bundles change between jobs
      (`pipeline.cli.model_updates`); None: no such field.
  """
  plan = plan or scaling.plan(
      pipeline.options, [], pattern=opts.input,
      tf_threads=getattr(opts, 'tf_threads', -1),
      split_bytes=getattr(opts, 'split_bytes', 0),
      rebalance=getattr(opts, 'rebalance', 'auto'))
  keep_fields = kept.parse_keep_fields(getattr(opts, 'keep_fields', None))
  keep_all = bool(getattr(opts, 'keep_all_fields', False))
  keeps = _keeps(opts)
  scorer = scorer or make_scorer(opts, tf_threads=plan.tf_threads)
  if files is None:
    docs, read_errors = pipeline | 'ReadCorpus' >> ReadCorpus(
        opts.input, opts.input_format, id_field=opts.id_field,
        text_field=opts.text_field, split_bytes=plan.split_bytes,
        rebalance=plan.rebalance, keep_fields=keep_fields,
        keep_all_fields=keep_all, outdir=opts.output)
  else:
    docs, read_errors = (
        pipeline | 'MatchedFiles' >> beam.Create(list(files))
        | 'ReadMatchedFiles' >> ReadMatchedFiles(
            opts.input_format, id_field=opts.id_field,
            text_field=opts.text_field, split_bytes=plan.split_bytes,
            keep_fields=keep_fields, keep_all_fields=keep_all))
  scores, errors = docs | 'ScoreDocuments' >> scorer
  if model_id is not None:
    scores = scores | 'AddModelId' >> beam.Map(with_model_id, model_id)
  counted = read_errors | 'CountReadErrors' >> beam.Map(progress.count_read_error)
  all_errors, columns = [errors, counted], None
  if keeps:
    # One error shape whether fields are kept or not; the record is in the
    # input.
    all_errors[0] = errors | 'StripErrorRecords' >> beam.Map(
        kept.strip_record)
    scores, misfits, columns = _keep_fields(scores, opts, keep_fields)
    if misfits is not None:
      all_errors.append(misfits)
  _ = (scores | 'CountScored' >> beam.ParDo(progress.CountScored())
       | 'WriteScores' >> WriteScores(
           opts.output, opts.output_format, num_shards=opts.num_shards,
           output_names=scorer.output_names,
           scores_as=getattr(opts, 'scores_as', 'list'), kept=keeps,
           kept_columns=columns, name=names[0],
           model_id=model_id is not None))
  _ = (all_errors | 'AllErrors' >> beam.Flatten()
       | 'TallyErrors' >> beam.Map(progress.tally_error)
       | 'WriteErrors' >> WriteErrors(opts.output,
                                      num_shards=opts.num_shards,
                                      name=names[1]))


def with_model_id(record: dict, model_id: str) -> dict:
  """``record`` with ``model_id`` right after ``truncated``."""
  out = {}
  for key, value in record.items():
    out[key] = value
    if key == 'truncated':
      out[MODEL_ID_FIELD] = model_id
  return out


def make_scorer(opts: Any, *, tf_threads: TFThreads = 0,
                probe_model: bool = True) -> ScoreDocuments:
  """The `ScoreDocuments` for the options: pairs, or dicts with kept fields.

  Args:
    opts: the parsed command line.
    tf_threads: TensorFlow threads per worker process (0: TF's default), or
      a `transforms.handler.CoreShare` (the plan's, on Flink and Spark).
    probe_model: load and probe the model in this process (see
      `ScoreDocuments`); off when the workers are other processes.

  Raises:
    BundleError: the bundle is missing or invalid.
  """
  # Kept fields make the documents dicts; pairs stay the fast path.
  record_fields = ({'id_field': opts.id_field, 'text_field': opts.text_field}
                   if _keeps(opts) else {})
  return ScoreDocuments(opts.model, batch_tokens=opts.batch_tokens,
                        tf_threads=tf_threads, probe_model=probe_model,
                        scoring_function=getattr(opts, 'scoring_function',
                                                 'auto'),
                        **record_fields)


def load_scorer(opts: Any, *, tf_threads: TFThreads = 0,
                probe_model: bool = True) -> ScoreDocuments:
  """Loads and checks the bundle; checks ``--scores_as`` against it.

  Raises:
    UsageError: the bundle is missing or invalid, or its output names
      cannot be columns.
  """
  try:
    scorer = make_scorer(opts, tf_threads=tf_threads, probe_model=probe_model)
  except BundleError as e:
    raise UsageError(f'--model {opts.model}: {e}') from e
  if opts.scores_as == 'columns':
    try:
      score_fields(scorer.output_names, 'columns')
    except ValueError as e:
      raise UsageError(f'--scores_as columns: {e} Use --scores_as list.') from e
  return scorer
