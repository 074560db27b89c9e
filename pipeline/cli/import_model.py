"""``python -m pipeline.import_keras``: turn a model trained the classic way
into a bundle.

Why this module exists: the import itself (`model.import_keras`) needs no
command line; this is the command around it: strict options, the checks of
the input files and ``--out`` before any work, and a report at the end.
"""

import logging
import sys
from typing import NoReturn, Optional, Sequence

from model.bundle import BundleError
from model.import_keras import ImportRefused, import_keras_model
from model.network import ModelFileError
from model.text import DEFAULT_MECAB_ARGS
from pipeline.cli.arguments import (StrictArgumentParser, add_log_level_argument,
                                    non_negative_float, positive_int, prog_name)
from pipeline.cli.preflight import (UsageError, check_bundle_output,
                                    check_input_file)
from runtime import console, process_exit

_LOGGER = logging.getLogger(__name__)


def build_parser() -> StrictArgumentParser:
  """The command line of ``pipeline.import_keras``."""
  parser = StrictArgumentParser(
      prog=prog_name('python -m pipeline.import_keras'),
      description='Import a classic Keras Embedding->LSTM->Dense scorer and '
      'its Tokenizer as a bundle.')
  parser.add_argument('--model', required=True, metavar='MODEL',
                      help='.keras or .h5 file (required)')
  parser.add_argument('--tokenizer', required=True, metavar='JSON',
                      help='JSON written by Keras Tokenizer.to_json() '
                      '(required)')
  parser.add_argument('--maxlen', type=positive_int, required=True,
                      help='the pad_sequences maxlen used in training '
                      '(required)')
  parser.add_argument('--out', required=True, metavar='BUNDLE',
                      help='bundle directory to write (required)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace a bundle that exists at --out')
  parser.add_argument('--padding', choices=('pre', 'post'), default='pre',
                      help='the pad_sequences padding used in training')
  parser.add_argument('--truncating', choices=('pre', 'post'), default='pre',
                      help='the pad_sequences truncating used in training')
  parser.add_argument('--mecab_args', '--mecab-args', default=DEFAULT_MECAB_ARGS,
                      help='MeCab arguments used in training (unidic-lite '
                      'unless -d DICDIR)')
  parser.add_argument('--output_names', '--output-names', default=None,
                      help='comma-separated score names; none: score_0, '
                      'score_1, ...')
  parser.add_argument('--tolerance', type=non_negative_float,
                      default=1e-5,
                      help='largest difference from the original model '
                      'accepted on the probe batch')
  add_log_level_argument(parser)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m pipeline.import_keras`` and ``ja-doc-import``; returns the exit
  status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    args = build_parser().parse_args(argv)
  except SystemExit as e:  # usage errors (2) and --help (0)
    return e.code if isinstance(e.code, int) else 2
  with console.Console(args.log_level, command=__name__):
    try:
      check_input_file(args.model, '--model')
      check_input_file(args.tokenizer, '--tokenizer')
      check_bundle_output(args.out, '--out', overwrite=args.overwrite)
      bundle = import_keras_model(
          args.model, args.tokenizer, args.out, maxlen=args.maxlen,
          padding=args.padding, truncating=args.truncating,
          mecab_args=args.mecab_args,
          output_names=(args.output_names.split(',')
                        if args.output_names else None),
          tolerance=args.tolerance, overwrite=args.overwrite)
    except UsageError as e:
      return console.fail(str(e))
    except FileExistsError as e:
      return console.fail(f'--out: {e} (--overwrite replaces it)')
    except (ModelFileError, ImportRefused, BundleError, ValueError) as e:
      return console.fail(str(e))
  print(f'Wrote bundle {bundle.path}: vocabulary {bundle.vocabulary.size} '
        f'words, maxlen {bundle.maxlen}, '
        f'{"masked" if bundle.masked else "FIXED-LENGTH (unmasked)"}, '
        f'outputs {bundle.output_names}')
  return 0


def cli() -> NoReturn:
  """The ``ja-doc-import`` console script: `main`, then an exit that skips the
  interpreter's teardown (`runtime.process_exit`)."""
  process_exit.run_command(main)
