"""The scoring command's options: its own, then any of Beam's.

Why this module exists: ``pipeline.score`` takes its own options and every
Beam pipeline option on one command line, strictly: an option neither knows
is an error naming the closest valid one. `ScoreOptions` is also a
`PipelineOptions` view, so a pipeline that embeds the scorer reads the same
options.
"""

import argparse
import sys
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli.arguments import (StrictArgumentParser, add_log_level_argument,
                                    check_beam_options, non_negative_float,
                                    non_negative_int, positive_float,
                                    positive_int, prog_name)
from pipeline.io.formats import INPUT_FORMATS, OUTPUT_FORMATS
from pipeline.local.watchdog import WatchdogOptions
from transforms.handler import (DEFAULT_BATCH_TOKENS, SCORING_FUNCTIONS,
                                SIGNATURE_BATCH_TOKENS)
from transforms.records import SCORES_AS

_REQUIRED = ('input', 'model', 'output')

BEAM_EPILOG = (
    'Apache Beam\'s pipeline options are accepted too, for example --runner, '
    '--direct_running_mode, --direct_num_workers, --flink_master, '
    '--parallelism, --job_endpoint, --environment_type, --temp_location, '
    '--setup_file. An option that neither this command nor Beam knows is an '
    'error. Dataflow\'s workers cannot read this machine\'s disk: with '
    '--runner DataflowRunner a local --input, --model or --output is an '
    'error before anything is submitted (Flink and Spark may share this '
    'machine or its filesystem, so their paths are not refused). With '
    '--runner DataflowRunner --dry_run=True the job is built but not '
    'submitted: the paths are checked offline (bucket names), the input is '
    'not listed, nothing is written, and only the bundle is read (it shapes '
    'the job).')


class ScoreOptions(PipelineOptions):
  """Options of the scoring pipeline (Beam's runner options come on top)."""
  @classmethod
  def _add_argparse_args(cls, parser):
    # Not argparse-required: every PipelineOptions in the process parses
    # these arguments, including those of pipelines that embed the scorer.
    # `parse_args` checks them.
    parser.add_argument('--input', metavar='PATTERN',
                        help='file pattern of the documents, on any Beam '
                        'filesystem; with --runner DataflowRunner not on '
                        'this machine (a gs:// pattern) (required)')
    parser.add_argument('--model', metavar='BUNDLE',
                        help='bundle directory; with --runner '
                        'DataflowRunner not on this machine (required)')
    parser.add_argument('--output', metavar='OUTDIR',
                        help='output directory; with --runner '
                        'DataflowRunner not on this machine (required)')
    parser.add_argument('--format', dest='output_format', default='jsonl',
                        choices=OUTPUT_FORMATS, help='format of the scores')
    parser.add_argument('--input_format', default='auto',
                        choices=INPUT_FORMATS + ('auto',),
                        help='format of the input; auto: by file extension')
    parser.add_argument('--num_shards', type=non_negative_int,
                        default=0,
                        help='output shards; 0: the runner decides')
    parser.add_argument('--scores_as', default='list', choices=SCORES_AS,
                        help='list: one "scores" field; columns: one column '
                        'per output, named after the bundle\'s outputs')
    parser.add_argument('--id_field', default='id',
                        help='id field of JSONL, CSV and Parquet input')
    parser.add_argument('--text_field', default='text',
                        help='text field of JSONL, CSV and Parquet input')
    parser.add_argument('--batch_tokens', type=positive_int,
                        default=DEFAULT_BATCH_TOKENS,
                        help='token budget of one padded inference batch '
                        '(scoring with the SavedModel signature splits it '
                        'further, to %d tokens)' % SIGNATURE_BATCH_TOKENS)
    parser.add_argument('--scoring_function', default='auto',
                        choices=SCORING_FUNCTIONS,
                        help='auto: a faster LSTM loop built from the '
                        "model's weights where it applies and matches the "
                        "SavedModel's signature on a probe; signature: "
                        "always the SavedModel's signature")
    parser.add_argument('--tf_threads', type=int, default=-1,
                        help='TensorFlow threads per worker process; -1: the '
                        "worker's share of the cores (1 on Dataflow; on Flink "
                        "and Spark each worker's cores divided by "
                        '--sdk_worker_parallelism); 0: '
                        "TensorFlow's default")
    parser.add_argument('--warm_workers', default='auto',
                        choices=('auto', 'off'),
                        help='auto: with local worker processes (the '
                        'DirectRunner\'s multi_processing, on Linux), start '
                        'them as the command starts, so that they import '
                        'TensorFlow and load the model while the job is '
                        'built; off: Beam starts them once the job runs')
    parser.add_argument('--split_bytes', type=non_negative_int,
                        default=0,
                        help='size of the ranges large input files are cut '
                        'into; 0: automatic, at most 64 MiB')
    parser.add_argument('--rebalance', default='auto',
                        choices=('auto', 'always', 'never'),
                        help='shuffle documents after reading; auto: on '
                        'Spark, Dataflow and other portable runners, not on '
                        'the local DirectRunner nor on Flink (which keeps '
                        'them in the slot that read them)')
    parser.add_argument('--keep_fields', default=None, metavar='A,B',
                        help='input fields to write after the scores, '
                        'separated by commas (the text only when named)')
    parser.add_argument('--keep_all_fields', action='store_true',
                        help='write every input field (the text too) after '
                        'the scores')
    parser.add_argument('--allow_empty_input', action='store_true',
                        help='a pattern that matches no file scores nothing '
                        'instead of failing')
    parser.add_argument('--progress_secs', type=non_negative_float,
                        default=10.0,
                        help='seconds between progress lines; 0: none')
    parser.add_argument('--watch', action='store_true',
                        help='follow the folder: match --input again every '
                        '--watch_interval_secs, score each new file once, '
                        'and write each --window_secs window\'s scores to '
                        'OUTDIR/scores-START-END-SSSSS-of-NNNNN.<ext> with '
                        'its errors beside them in _errors-START-END-...'
                        '.jsonl, until SIGINT or SIGTERM (exit status 130, '
                        'with every complete window kept). On this '
                        'machine\'s DirectRunner only, in this process; '
                        '--format jsonl or csv only')
    parser.add_argument('--watch_interval_secs', type=positive_float,
                        default=10.0,
                        help='with --watch: seconds between two matches of '
                        '--input')
    parser.add_argument('--window_secs', type=positive_int, default=60,
                        help='with --watch: length of a window in seconds; '
                        'the files matched in a window are scored when it '
                        'ends')
    parser.add_argument('--model_updates', default=None, metavar='PATTERN',
                        help='with --watch: bundle directories to follow '
                        '(e.g. \'models/*\'); each one whose manifest.json '
                        'appears after the start is validated and, if it can '
                        'replace the running bundle, scores the windows that '
                        'follow; a refused one is logged and the previous '
                        'one keeps scoring. Score records then end in '
                        'model_id, the bundle that scored them')
    add_log_level_argument(parser)


def build_parser() -> StrictArgumentParser:
  """The command line of ``pipeline.score`` (its own options only)."""
  parser = StrictArgumentParser(
      prog=prog_name('python -m pipeline.score'),
      description='Score Japanese documents with a bundle on Apache Beam.',
      epilog=BEAM_EPILOG)
  ScoreOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  WatchdogOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def parse_args(argv: Optional[Sequence[str]] = None
               ) -> tuple[argparse.Namespace, PipelineOptions]:
  """Parses the command line strictly.

  Exits with status 2 (argparse) on an option that neither this command nor
  Beam knows, naming the closest valid one, and on a bad or missing value.

  Returns:
    The command's options and the full `PipelineOptions`.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  check_beam_options(parser, rest)
  missing = [f'--{name}' for name in _REQUIRED if not getattr(args, name)]
  if missing:
    parser.error(f'the following arguments are required: '
                 f'{", ".join(missing)}')
  return args, PipelineOptions(argv)
