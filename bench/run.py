"""Benchmark: this project's scorer against the classic Keras scoring.

Usage, from the repository root::

  python -m bench.run [--docs 2000,8000] [--files 1,8] \\
      [--variants classic,ours_1w,ours_2w,ours_default,...] \\
      [--startup_docs 8] [--repeat 1] [--results bench/results]

On reproducible corpora of ``--docs`` documents each (`bench.corpus`), it
runs every variant as its own process, one after the other, and times the
whole process:

* ``classic``: the classic script (MeCab, Keras ``Tokenizer``,
  ``pad_sequences(maxlen=8000)``, ``model.predict``; `bench.variants`);
* ``beam_stock``: stock Beam ``RunInference`` on rows padded to 8000
  (smallest corpus only: it holds gigabytes of padded rows);
* ``ours_1w``, ``ours_2w``, ``ours_default``: ``python -m pipeline.score``
  as users run it, with ``--direct_num_workers 1``, with
  ``--direct_running_mode multi_processing --direct_num_workers 2``, and
  with no runner flag (`pipeline.local.scaling` decides); each from one file and
  from the same documents dealt into each ``--files`` count of files;
* ``floor_mecab`` and ``floor_model``: MeCab alone and the model alone as
  the scorer runs it (their own timers: the least any pipeline could spend);
* ``flink_cluster`` and ``spark_cluster`` (only when named in
  ``--variants``): ``python -m pipeline.score`` submitted to a Flink session
  cluster (a JobManager, two TaskManagers of one slot, each with its own
  Beam worker pool) and to a Spark standalone master with a 2-core worker,
  started on this machine (`tests.clusters`) for that variant's runs only,
  each round, and warmed by one untimed job; the report puts each beside
  ``ours_default`` (target (c): steady state >= 0.8x).

Start-up is each command's wall time on a tiny corpus (``--startup_docs``,
dealt into the same number of files; ``ours_default`` with the runner flags
it picks for the large input); steady-state documents/s is documents /
(wall - start-up). Peak RSS is sampled every 50 ms (psutil): the sum
over the process and its children, and each process's own peak. Scores are
compared with the classic script's. Results go to ``results.md``,
``results.json`` and ``throughput.png`` under ``--results``.

``--repeat N`` runs N rounds, each running every measurement once in the
same order (start-ups included), and keeps each measurement's median run.
The machines this was built on vary by 10 to 20 % over minutes, and a round
puts the runs that a ratio compares minutes apart, not a whole variant's
repeats apart; the report also gives target (a) round by round.
"""

import argparse
import contextlib
import glob
import importlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import psutil

from bench import report
from bench.corpus import MAXLEN, make_corpus, split_corpus
from bench.variants import make_classic_model, read_texts, save_scores
from pipeline.local.processes import WARM_WORKERS_MODULE
from runtime import sdk_worker
from runtime.process_exit import SDK_WORKER_MAIN

_LOGGER = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('classic', 'beam_stock', 'ours_1w', 'ours_2w', 'ours_default',
            'floor_mecab', 'floor_model', 'flink_cluster', 'spark_cluster')
#: What runs without ``--variants``: everything but the engines, which start
#: clusters (Java) first.
DEFAULT_VARIANTS = VARIANTS[:-2]
#: Runner flags of the scorer's variants. The engines' flags come from their
#: cluster (`ENGINE_CLUSTERS`), started once for the whole run.
SCORE_FLAGS = {
    'ours_1w': ['--direct_num_workers', '1'],
    'ours_2w': ['--direct_running_mode', 'multi_processing',
                '--direct_num_workers', '2'],
    'ours_default': [],
    'flink_cluster': [],
    'spark_cluster': [],
}
#: The engines as users run them on a cluster: ``pipeline.score`` submitted
#: to a cluster of separate processes on this machine (`tests.clusters`),
#: each with 2 slots or cores, started before the first round and stopped
#: after the last: (module, context manager).
ENGINE_CLUSTERS = {
    'flink_cluster': ('tests.clusters.flink', 'session_cluster'),
    'spark_cluster': ('tests.clusters.spark', 'standalone_cluster'),
}
#: Variants timed by their own clock rather than as whole processes.
FLOORS = ('floor_mecab', 'floor_model')
#: The module Beam's DirectRunner runs its worker processes with, in
#: ``multi_processing`` mode (``python -m ...``, under ``sh -c``).
SDK_WORKER_MODULE = SDK_WORKER_MAIN
#: What the DirectRunner's cold worker processes of a scoring job run.
COLD_MODULE = sdk_worker.MODULE
#: `pipeline.local.warm_workers`: one ``serve`` process imports, then forks
#: the SDK worker processes (which keep its command line).
WARM_MODULE = WARM_WORKERS_MODULE


def _is_sdk_worker(command: list[str], parent: list[str]) -> bool:
  """Whether a process runs a Beam SDK worker, from its and its parent's
  command lines: Beam's own, a scoring job's cold one, or one that a warm
  process forked."""
  def warm(cmd):
    return WARM_MODULE in cmd and 'serve' in cmd
  return (SDK_WORKER_MODULE in command or COLD_MODULE in command or
          (warm(command) and warm(parent)))


# --- measuring one process ---------------------------------------------------

def process_rss(pid: int) -> dict[int, int]:
  """Bytes of RSS of ``pid`` and of each of its descendants (psutil)."""
  try:
    root = psutil.Process(pid)
    tree = [root] + root.children(recursive=True)
  except psutil.NoSuchProcess:
    return {}
  found = {}
  for process in tree:
    try:
      found[process.pid] = process.memory_info().rss
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
      continue  # The process ended between two reads.
  return found


def _parent(pid: int) -> int:
  try:
    return psutil.Process(pid).ppid()
  except psutil.NoSuchProcess:
    return 0


def _cmdline(pid: int) -> list[str]:
  try:
    return psutil.Process(pid).cmdline()
  except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
    return []


class _RssSampler(threading.Thread):
  """Samples a process tree's RSS until stopped: the peak sum, each pid's
  peak, and each pid's command line."""
  def __init__(self, pid: int, every_s: float = 0.05):
    super().__init__(daemon=True)
    self.pid = pid
    self.every_s = every_s
    self.peak_total = 0
    self.peaks: dict[int, int] = {}
    self.commands: dict[int, list[str]] = {}
    self.parents: dict[int, int] = {}
    self._done = threading.Event()

  def run(self):
    while not self._done.is_set():
      sizes = process_rss(self.pid)
      self.peak_total = max(self.peak_total, sum(sizes.values()))
      for p, size in sizes.items():
        if SDK_WORKER_MODULE not in self.commands.get(p, []):
          # Again: it may not have exec'd yet. An exited process (a zombie)
          # reads as empty: keep what it read while it ran.
          command = _cmdline(p)
          if any(command):
            self.commands[p] = command
        if p not in self.parents:
          self.parents[p] = _parent(p)
        self.peaks[p] = max(self.peaks.get(p, 0), size)
      self._done.wait(self.every_s)

  def stop(self):
    self._done.set()
    self.join()


def measure(command: list[str]) -> dict[str, Any]:
  """Runs ``command`` from the repository root; its wall time and memory.

  Returns:
    ``wall_s``, ``peak_rss_mb`` (the tree's largest sum),
    ``peak_main_rss_mb``, ``processes`` (all seen, helpers included),
    ``workers`` (Beam SDK worker processes seen, warm ones included, or 1:
    the process itself),
    ``peak_worker_rss_mb`` (the largest SDK worker's peak; the process's own
    without workers), ``stdout``, ``stderr``.

  Raises:
    RuntimeError: the command failed; the message ends with its stderr.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=os.pathsep.join(
                 p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  sampler = _RssSampler(proc.pid)
  sampler.start()
  stdout, stderr = proc.communicate()
  wall = time.perf_counter() - start
  sampler.stop()
  out, err = (s.decode('utf-8', 'replace') for s in (stdout, stderr))
  if proc.returncode != 0:
    raise RuntimeError(f'{shlex.join(command)} failed with exit status '
                       f'{proc.returncode}:\n{err[-3000:]}')
  main = sampler.peaks.get(proc.pid, 0)
  workers = [v for p, v in sampler.peaks.items()
             if _is_sdk_worker(sampler.commands.get(p, []),
                               sampler.commands.get(sampler.parents.get(p),
                                                    []))]
  return {'wall_s': wall, 'peak_rss_mb': sampler.peak_total / 2**20,
          'peak_main_rss_mb': main / 2**20,
          'peak_worker_rss_mb': max(workers or [main]) / 2**20,
          'workers': len(workers) or 1, 'processes': len(sampler.peaks),
          'stdout': out, 'stderr': err}


# --- the variants --------------------------------------------------------------

def run_score(variant: str, pattern: str, bundle: str, out: str,
              ids: Optional[list[str]], extra_flags: Sequence[str] = ()
              ) -> dict[str, Any]:
  """Runs ``python -m pipeline.score`` as a user would; checks its outputs.

  Args:
    variant: one of `SCORE_FLAGS`.
    pattern: the input file pattern.
    bundle: the bundle directory.
    out: prefix of this run's files (``out.d/`` gets the scores).
    ids: the corpus's ids in order, to save the scores in that order (None:
      only check that every document was scored).
    extra_flags: flags added after the variant's own.

  Raises:
    RuntimeError: a document is missing from the scores, scored twice, or
      has an error.
  """
  outdir = out + '.d'
  shutil.rmtree(outdir, ignore_errors=True)
  command = [sys.executable, '-m', 'pipeline.score', '--input', pattern,
             '--model', bundle, '--output', outdir,
             *SCORE_FLAGS[variant], *extra_flags]
  result = measure(command)
  records = read_scores(outdir, ids, shlex.join(command))
  result['scored_by'] = scored_by(outdir)
  if ids is not None:
    save_scores(out, ids, np.asarray([records[i]['scores'] for i in ids],
                                     np.float32))
  result.update(
      seconds=result['wall_s'], inner_s=None, padded_tokens=None,
      real_tokens=sum(min(r['n_tokens'], MAXLEN)
                      for r in records.values()))
  return result


def read_scores(outdir: str, ids: Optional[list[str]],
                what: str) -> dict[str, dict]:
  """The score records ``pipeline.score`` wrote in ``outdir``, by id.

  Args:
    outdir: the scorer's output directory.
    ids: every document's id (None: not checked against a corpus).
    what: the command, for the error message.

  Raises:
    RuntimeError: a document is missing, scored twice, or has an error.
  """
  records, scored = {}, 0
  for shard in sorted(glob.glob(os.path.join(outdir, 'scores-*'))):
    with open(shard, encoding='utf-8') as f:
      for line in f:
        record = json.loads(line)
        records[record['id']] = record
        scored += 1
  errors = []
  for shard in sorted(glob.glob(os.path.join(outdir, 'errors-*'))):
    with open(shard, encoding='utf-8') as f:
      errors += [line for line in f if line.strip()]
  if errors or scored != len(records) or (
      ids is not None and set(records) != set(ids)):
    raise RuntimeError(
        f'{what} wrote {scored} scores for {len(records)} '
        f'distinct documents of {len(ids) if ids is not None else "?"}, and '
        f'{len(errors)} errors; first error: {errors[:1]}')
  return records


def scored_by(outdir: str) -> Optional[int]:
  """How many worker processes scored documents, from ``_SUMMARY.json``."""
  try:
    with open(os.path.join(outdir, '_SUMMARY.json'), encoding='utf-8') as f:
      workers = json.load(f).get('scored_by_worker')
  except (OSError, ValueError):
    return None
  return sum(1 for n in workers.values() if n) if workers else None


@contextlib.contextmanager
def engine(variant: str, workdir: str) -> Iterator[Optional[list[str]]]:
  """Runs ``variant``'s cluster for the block, if it is an engine variant;
  yields the runner flags that submit to it (None for other variants).

  One cluster at a time: an idle Flink or Spark cluster's JVMs still take
  CPU (heartbeats, collection), so none is up while another variant's runs
  are timed.
  """
  if variant not in ENGINE_CLUSTERS:
    yield None
    return
  module, name = ENGINE_CLUSTERS[variant]
  start = getattr(importlib.import_module(module), name)
  _LOGGER.info('starting the cluster of %s (%s.%s)', variant, module, name)
  with start(os.path.join(workdir, f'cluster_{variant}')) as cluster:
    flags = cluster.beam_flags()
    _LOGGER.info('  %s: %s', variant, shlex.join(flags))
    yield flags


def startup_key(variant: str, files: int, flags: Sequence[str]
                ) -> tuple[str, int, str]:
  """What a start-up run is kept under: ``(command, files, flags)``.

  Keyed by the command: the default's start-up with the runner flags the
  plan picks is the start-up of the variant given those flags. An engine's
  flags name its cluster's ports, new each round, so they are kept under
  the variant's name instead.
  """
  if variant in ENGINE_CLUSTERS:
    return ('pipeline.score', files, f'({variant} flags)')
  if variant in SCORE_FLAGS:
    return ('pipeline.score', files, shlex.join(SCORE_FLAGS[variant] +
                                                list(flags)))
  return (f'bench.variants {variant}', 1, '')


def run_inhouse(variant: str, corpus: str, paths: dict[str, str],
                out: str) -> dict[str, Any]:
  """Runs one of `bench.variants` in its own process."""
  result = measure([sys.executable, '-m', 'bench.variants', variant,
                    '--corpus', corpus, '--paths', json.dumps(paths),
                    '--out', out])
  with open(out + '.json', encoding='utf-8') as f:
    own = json.load(f)
  result.update(inner_s=own['seconds'], real_tokens=own['real_tokens'],
                padded_tokens=own['padded_tokens'] if own['padded_tokens']
                else None,
                seconds=own['seconds'] if variant in FLOORS else result['wall_s'])
  return result


def default_flags(pattern: str) -> list[str]:
  """The runner flags `pipeline.local.scaling` adds for this input, with none given."""
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

  from pipeline.local import scaling  # pylint: disable=import-outside-toplevel
  return scaling.plan(PipelineOptions([]), [], pattern=pattern).flags


def _portable(argv: Sequence[str]) -> list[str]:
  """The arguments as the results record them: an absolute path becomes
  relative to the repository (or just its name, outside it), so committed
  results name no folder of the machine they were made on."""
  out = []
  for arg in argv:
    if os.path.isabs(arg):
      inside = os.path.commonpath([ROOT, arg]) == ROOT
      arg = os.path.relpath(arg, ROOT) if inside else os.path.basename(arg)
    out.append(arg)
  return out


def _median_of_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
  """The run with the median time (the lower middle one of an even count).

  With several rounds it also carries ``round_seconds`` and
  ``round_startup_s``, round by round; its ``startup_s`` is then the median
  start-up, ``max_diff`` the largest over the rounds.
  """
  chosen = dict(sorted(runs, key=lambda r: r['seconds'])[(len(runs) - 1) // 2])
  if len(runs) > 1:
    chosen['round_seconds'] = [r['seconds'] for r in runs]
    startups = [r['startup_s'] for r in runs]
    chosen['round_startup_s'] = startups
    if None not in startups:
      chosen['startup_s'] = sorted(startups)[(len(startups) - 1) // 2]
    diffs = [r['max_diff'] for r in runs if r['max_diff'] is not None]
    chosen['max_diff'] = max(diffs) if diffs else None
  return chosen


def forget_classic_scores(workdir: str) -> list[str]:
  """Removes the classic script's saved scores from ``workdir``.

  Scores are compared with the classic script's only when both come from
  the same model, which each run rebuilds; a run without the ``classic``
  variant then reports no difference rather than one against another model.
  Returns the removed paths.
  """
  removed = sorted(glob.glob(os.path.join(workdir, 'classic_*_1f.*')))
  for path in removed:
    os.remove(path)
  return removed


def _max_diff(out: str, reference: str) -> Optional[float]:
  if not os.path.exists(out + '.npy') or not os.path.exists(reference + '.npy'):
    return None
  return float(np.max(np.abs(np.load(out + '.npy') - np.load(reference + '.npy'))))


def _machine() -> str:
  model = ''
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      model = next((line.split(':', 1)[1].strip() for line in f
                    if line.startswith('model name')), '')
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return (f'{usable} usable CPU cores of {os.cpu_count()}'
          f'{f" ({model})" if model else ""}, Python '
          f'{platform.python_version()}')


def _csv(text: str, kind=int) -> list:
  return [kind(x) for x in text.split(',') if x.strip()]


# --- the run ---------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the benchmark; see the module's docstring."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(prog='python -m bench.run')
  parser.add_argument('--docs', default='2000,8000',
                      help='documents of each corpus, comma-separated')
  parser.add_argument('--files', default='1,8',
                      help="files the scorer's variants read each corpus "
                      'from, comma-separated (1: the corpus file itself)')
  parser.add_argument('--variants', default=','.join(DEFAULT_VARIANTS),
                      help=f'comma-separated, of {",".join(VARIANTS)}')
  parser.add_argument('--startup_docs', type=int, default=8,
                      help='documents of the start-up corpus (0: no start-up '
                      'runs, no steady state)')
  parser.add_argument('--repeat', type=int, default=1,
                      help='rounds, each running every measurement once; '
                      'the median run of each is kept')
  parser.add_argument('--workdir', default='bench/work')
  parser.add_argument('--results', default='bench/results')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  sizes = sorted(set(_csv(args.docs)))
  file_counts = sorted(set(_csv(args.files)) | {1})
  variants = _csv(args.variants, str)
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown or not sizes or min(sizes) < 1 or args.repeat < 1:
    parser.error(f'--variants must come from {",".join(VARIANTS)} (unknown: '
                 f'{unknown}); --docs and --repeat must be positive.')
  if max(file_counts) > min(sizes):
    parser.error(f'--files {max(file_counts)} needs corpora of at least as '
                 f'many documents (--docs {min(sizes)}).')
  variants = [v for v in VARIANTS if v in variants]  # Classic first.

  logging.basicConfig(level=logging.INFO, format='%(message)s')
  for noisy in ('gensim', 'absl', 'tensorflow', 'model', 'apache_beam',
                'pipeline'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  workdir, results = os.path.abspath(args.workdir), os.path.abspath(args.results)
  os.makedirs(workdir, exist_ok=True)
  os.makedirs(results, exist_ok=True)

  # Corpora: each size, and the same documents dealt into files.
  corpora, inputs = {}, {}
  startup_docs = max(args.startup_docs, max(file_counts)) if (
      args.startup_docs > 0) else 0
  for docs in sorted(set(sizes) | ({startup_docs} if startup_docs else set())):
    path = os.path.join(workdir, f'corpus_{docs}.jsonl')
    name = str(docs) if docs in sizes else f'{docs} (start-up)'
    corpora[name] = make_corpus(path, docs, args.seed + docs)
    _LOGGER.info('corpus %s: %s', name, corpora[name])
    inputs[(docs, 1)] = path
    for n in file_counts:
      if n > 1:
        inputs[(docs, n)] = split_corpus(
            path, n, os.path.join(workdir, f'corpus_{docs}_{n}files'))
  paths = make_classic_model(inputs[(sizes[0], 1)], workdir, args.seed)
  # The model was just rebuilt (from this run's smallest corpus): the classic
  # script's scores from an earlier run are another model's.
  forget_classic_scores(workdir)
  _LOGGER.info('model: %s', paths)

  # Start-up runs: one per command and round, in that round.
  startups: dict[tuple[str, int, str], list[float]] = {}

  def startup(variant: str, files: int, flags: list[str],
              round_no: int) -> Optional[float]:
    """The wall time of ``variant``'s command on the start-up corpus."""
    if not startup_docs or variant in FLOORS:
      return None
    key = startup_key(variant, files, flags)
    seconds = startups.setdefault(key, [])
    if len(seconds) <= round_no:
      out = os.path.join(workdir, f'startup_{variant}_{files}f')
      if variant in SCORE_FLAGS:
        r = run_score(variant, inputs[(startup_docs, files)], paths['bundle'],
                      out, read_texts(inputs[(startup_docs, 1)])[0], flags)
      else:
        r = run_inhouse(variant, inputs[(startup_docs, 1)], paths, out)
      seconds.append(r['seconds'])
      _LOGGER.info('  start-up of %s from %d file(s) %s: %.2f s', key[0],
                   files, key[2], r['seconds'])
    return seconds[round_no]

  # Rounds: each runs every measurement once, in the same order, so that a
  # slow spell of the machine falls on all variants alike. An engine's
  # cluster runs only for its own measurements, and a first job warms it
  # (its JVMs load and compile the job's classes once, which a cluster that
  # serves many jobs has long done): neither is timed.
  measured: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
  for round_no in range(args.repeat):
    if args.repeat > 1:
      _LOGGER.info('round %d of %d', round_no + 1, args.repeat)
    for variant in variants:
      with engine(variant, workdir) as engine_flags:
        if engine_flags is not None:
          warm_up = run_score(
              variant, inputs[(startup_docs or sizes[0], 1)], paths['bundle'],
              os.path.join(workdir, f'warm_up_{variant}'), None,
              engine_flags)['seconds']
          _LOGGER.info('  warm-up job of %s: %.1f s (not counted)', variant,
                       warm_up)
        for docs in sizes:
          if variant == 'beam_stock' and docs != sizes[0]:
            continue  # Stock RunInference holds rows padded to 8000: GBs.
          ids, _ = read_texts(inputs[(docs, 1)])
          for files in file_counts if variant in SCORE_FLAGS else [1]:
            out = os.path.join(workdir, f'{variant}_{docs}_{files}f')
            if variant in SCORE_FLAGS:
              pattern = inputs[(docs, files)]
              engine_args = engine_flags or []
              flags = (default_flags(pattern) if variant == 'ours_default'
                       else engine_args)
              r = run_score(variant, pattern, paths['bundle'], out, ids,
                            engine_args)
              r['startup_s'] = startup(variant, files, flags, round_no)
            else:
              r = run_inhouse(variant, inputs[(docs, 1)], paths, out)
              r['startup_s'] = startup(variant, 1, [], round_no)
            for key in ('stdout', 'stderr'):
              r.pop(key)
            r.update(variant=variant, docs=docs, files=files,
                     max_diff=(0.0 if variant == 'classic' else _max_diff(
                         out, os.path.join(workdir, f'classic_{docs}_1f'))))
            measured.setdefault((variant, docs, files), []).append(r)
            _LOGGER.info(
                '%s, %d documents, %d file(s), %s worker(s): %.1f s (start-up '
                '%s s); peak RSS %.0f MB; max abs diff %s', variant, docs,
                files, r['workers'], r['seconds'], _fmt(r['startup_s']),
                r['peak_rss_mb'], _fmt(r['max_diff'], '.1e'))
  rows = report.derive([_median_of_rounds(runs) for runs in measured.values()])
  command = 'python -m bench.run ' + shlex.join(_portable(argv))
  machine = _machine()
  with open(os.path.join(results, 'results.json'), 'w', encoding='utf-8') as f:
    json.dump({'command': command.strip(), 'machine': machine,
               'corpora': corpora,
               'startups': [{'command': k[0], 'files': k[1], 'flags': k[2],
                             'seconds': v} for k, v in startups.items()],
               'rows': rows}, f, indent=2)
  print(report.write_report(rows, corpora, results, machine, command.strip()))
  try:
    print(f'Plot: {report.plot(rows, results)}')
  except ImportError as e:
    _LOGGER.warning('No plot (pip install -e ".[bench]"): %s', e)
  return 0


def _fmt(value: Optional[float], fmt: str = '.1f') -> str:
  return 'n/a' if value is None else f'{value:{fmt}}'


if __name__ == '__main__':
  sys.exit(main())
