"""The benchmark's figures: derived rates, the Markdown report and the plot.

Kept apart from the runs so the tests can feed it made-up rows. A row is one
timed process (see `bench.run`); `derive` adds the rates and the ratios
against the classic script, `write_report` writes ``results.md`` and `plot`
writes ``throughput.png``.
"""

import os
from typing import Any, Optional

#: The scorer's variants, as users run it: ``python -m pipeline.score``.
SCORE_VARIANTS = ('ours_1w', 'ours_2w', 'ours_default')
#: The scorer on real engines (`tests.clusters`): ``pipeline.score`` with
#: ``--runner FlinkRunner --flink_master`` / ``SparkRunner
#: --spark_master_url spark://``, compared with ``ours_default``.
ENGINE_VARIANTS = ('flink_cluster', 'spark_cluster')
ENGINE_BASELINE = 'ours_default'
#: (c) each engine's steady state against the DirectRunner default's.
ENGINE_TARGET = 0.8
#: The documents at and over which target (a) and the 5x of (b) apply.
LARGE_DOCS = 8000
SCALING_TARGET = 1.7
SPEEDUP_TARGETS = (3.0, 5.0)  # (about 2,000 documents, LARGE_DOCS or more)
MAX_DIFF_TARGET = 1e-5


def _rate(amount: Optional[float], seconds: Optional[float]) -> Optional[float]:
  if amount is None or seconds is None or seconds <= 0:
    return None
  return amount / seconds


def derive(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Adds rates, steady-state rates and ratios to each row, in place.

  Steady state takes out the variant's start-up, the wall time of the same
  command on a tiny corpus: ``docs / (seconds - startup_s)``. Ratios are
  against the ``classic`` row with the same documents.

  Args:
    rows: dicts with ``variant``, ``docs``, ``files``, ``seconds``,
      ``real_tokens`` and optionally ``startup_s``, ``padded_tokens``.

  Returns:
    The same rows.
  """
  for r in rows:
    startup = r.get('startup_s')
    steady = (r['seconds'] - startup if startup is not None
              and r['seconds'] > startup else None)
    r['steady_s'] = steady
    r['docs_per_s'] = _rate(r['docs'], r['seconds'])
    r['steady_docs_per_s'] = _rate(r['docs'], steady)
    r['real_tokens_per_s'] = _rate(r.get('real_tokens'), r['seconds'])
    r['steady_tokens_per_s'] = _rate(r.get('real_tokens'), steady)
    r['padded_tokens_per_s'] = _rate(r.get('padded_tokens'), r['seconds'])
  classic = {r['docs']: r for r in rows if r['variant'] == 'classic'}
  for r in rows:
    base = classic.get(r['docs'])
    r['ratio'] = _ratio(r['docs_per_s'], base and base['docs_per_s'])
    r['steady_ratio'] = _ratio(r['steady_docs_per_s'],
                               base and base['steady_docs_per_s'])
  return rows


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return a / b if a is not None and b else None


def _f(value: Optional[float], fmt: str, suffix: str = '') -> str:
  return '' if value is None else f'{value:{fmt}}{suffix}'


def worker_rss_mb(row: dict[str, Any]) -> Optional[float]:
  """Peak RSS of one worker process: a child's where the runner started
  worker processes, else the one process's."""
  if (row.get('workers') or 1) > 1 and row.get('peak_worker_rss_mb'):
    return row['peak_worker_rss_mb']
  return row.get('peak_main_rss_mb')


def write_report(rows: list[dict[str, Any]], corpora: dict[str, dict],
                 results_dir: str, machine: str,
                 command: str = 'python -m bench.run') -> str:
  """Writes ``results.md`` under ``results_dir``; returns its text.

  Args:
    rows: derived rows (see `derive`).
    corpora: corpus name -> statistics (`bench.corpus.make_corpus`).
    results_dir: the folder to write into.
    machine: a line describing the machine.
    command: the command line that produced the rows.
  """
  rounds = max((len(r.get('round_seconds') or ()) for r in rows), default=1)
  lines = [
      '# Benchmark results', '',
      f'Machine: {machine}. One run of `{command}`. Every variant is one '
      f'process, timed from its start to its exit (imports, model loading, '
      f'reading, MeCab, inference, writing), on the same documents; the '
      f'floors time only their own work. Start-up is the same command\'s wall '
      f'time on the tiny corpus; steady state is documents / (wall - '
      f'start-up).' + (
          f' Each row is the median of {rounds} rounds, each of which ran '
          f'every measurement once, in the same order.' if rounds > 1
          else ''), '',
      'Corpora (MeCab tokens per document):', '',
      '| corpus | documents | MB | tokens | median | p90 | p99 | over 8000 |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for name, c in corpora.items():
    lines.append(
        f'| {name} | {c["docs"]} | {c.get("bytes", 0) / 2**20:.1f} | '
        f'{c["tokens"]} | {c["median"]:.0f} | {c["p90"]:.0f} | '
        f'{c["p99"]:.0f} | {100 * c["over_maxlen"]:.1f}% |')
  lines += [
      '', '| variant | docs | files | workers | wall s | start-up s | docs/s '
      '| steady docs/s | steady tokens/s | padded tokens/s | peak RSS MB (all '
      'processes) | vs classic | steady vs classic | max abs diff vs classic |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(
        f'| {r["variant"]} | {r["docs"]} | {r["files"]} | '
        f'{r.get("workers") or ""} | {r["seconds"]:.1f} | '
        f'{_f(r.get("startup_s"), ".1f")} | {_f(r["docs_per_s"], ".1f")} | '
        f'{_f(r["steady_docs_per_s"], ".1f")} | '
        f'{_f(r["steady_tokens_per_s"], ".0f")} | '
        f'{_f(r["padded_tokens_per_s"], ".0f")} | '
        f'{_f(r.get("peak_rss_mb"), ".0f")} | {_f(r["ratio"], ".2f", "x")} | '
        f'{_f(r["steady_ratio"], ".2f", "x")} | '
        f'{_f(r.get("max_diff"), ".2e")} |')
  per_worker = [r for r in rows if r['variant'] in SCORE_VARIANTS]
  if per_worker:
    lines += [
        '', 'Per worker process (`pipeline.score`; steady state divided by '
        'the worker processes; RSS: the largest worker process, and the '
        'runner\'s own process):', '',
        '| variant | docs | files | workers | docs/s per worker | tokens/s '
        'per worker | peak RSS MB per worker | runner process MB |',
        '|---|---|---|---|---|---|---|---|']
    for r in per_worker:
      workers = r.get('workers') or 1
      lines.append(
          f'| {r["variant"]} | {r["docs"]} | {r["files"]} | {workers} | '
          f'{_f(_ratio(r["steady_docs_per_s"], workers), ".1f")} | '
          f'{_f(_ratio(r["steady_tokens_per_s"], workers), ".0f")} | '
          f'{_f(worker_rss_mb(r), ".0f")} | '
          f'{_f(r.get("peak_main_rss_mb"), ".0f")} |')
  engines = engine_rows(rows)
  if engines:
    lines += [
        '', f'Engines against the DirectRunner default (`{ENGINE_BASELINE}`, '
        'same documents and files, same run). Start-up is the command\'s wall '
        'time on the tiny corpus, with the cluster already running; steady '
        'state is documents / (wall - start-up); marginal is the documents '
        'added / the seconds added from the smallest to the largest corpus:',
        '', '| variant | docs | files | start-up s | steady docs/s | '
        f'{ENGINE_BASELINE} steady docs/s | steady ratio | marginal docs/s | '
        f'{ENGINE_BASELINE} marginal docs/s | marginal ratio | scored by |',
        '|---|---|---|---|---|---|---|---|---|---|---|']
    for e in engines:
      lines.append(
          f'| {e["variant"]} | {e["docs"]} | {e["files"]} | '
          f'{_f(e["startup_s"], ".1f")} | {_f(e["steady"], ".1f")} | '
          f'{_f(e["base_steady"], ".1f")} | {_f(e["steady_ratio"], ".2f", "x")}'
          f' | {_f(e["marginal"], ".1f")} | {_f(e["base_marginal"], ".1f")} | '
          f'{_f(e["marginal_ratio"], ".2f", "x")} | '
          f'{e.get("scored_by") or ""} |')
  lines += ['', 'Against the targets:', '']
  lines += [f'- {line}' for line in target_lines(rows)]
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(results_dir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  return text


def _marginal(small: Optional[dict[str, Any]],
              large: Optional[dict[str, Any]]) -> Optional[float]:
  """Documents added / seconds added from ``small``'s run to ``large``'s."""
  if not small or not large or large['docs'] <= small['docs']:
    return None
  return _rate(large['docs'] - small['docs'],
               large['seconds'] - small['seconds'])


def engine_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Each engine run beside the DirectRunner default's on the same input.

  Returns:
    One dict per row of an `ENGINE_VARIANTS` variant: ``variant``,
    ``docs``, ``files``, ``startup_s``, ``steady`` and ``base_steady``
    (steady docs/s), ``steady_ratio``; on the largest corpus also
    ``marginal``, ``base_marginal`` and ``marginal_ratio`` (from the
    smallest corpus, same files); ``scored_by``: the worker processes that
    scored documents, where known.
  """
  at = {(r['variant'], r['docs'], r['files']): r for r in rows}
  sizes = sorted({r['docs'] for r in rows})
  out = []
  for r in rows:
    if r['variant'] not in ENGINE_VARIANTS:
      continue
    base = at.get((ENGINE_BASELINE, r['docs'], r['files']))
    e = {'variant': r['variant'], 'docs': r['docs'], 'files': r['files'],
         'startup_s': r.get('startup_s'), 'steady': r['steady_docs_per_s'],
         'base_steady': base and base['steady_docs_per_s'],
         'marginal': None, 'base_marginal': None,
         'scored_by': r.get('scored_by')}
    e['steady_ratio'] = _ratio(e['steady'], e['base_steady'])
    if r['docs'] == sizes[-1] and len(sizes) > 1:
      e['marginal'] = _marginal(at.get((r['variant'], sizes[0], r['files'])),
                                r)
      e['base_marginal'] = _marginal(
          at.get((ENGINE_BASELINE, sizes[0], r['files'])), base)
    e['marginal_ratio'] = _ratio(e['marginal'], e['base_marginal'])
    out.append(e)
  return out


def _round_ratios(one: dict[str, Any], two: dict[str, Any]) -> str:
  """``one``'s time over ``two``'s in each round (same documents), if known."""
  a, b = one.get('round_seconds'), two.get('round_seconds')
  if not a or not b or len(a) != len(b):
    return ''
  return ', '.join(f'{x / y:.2f}x' for x, y in zip(a, b))


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
  """The issue's targets, computed from one run's derived rows."""
  at = {(r['variant'], r['docs'], r['files']): r for r in rows}
  sizes = sorted({r['docs'] for r in rows})
  files = sorted({r['files'] for r in rows})
  out = []
  for docs in sizes:  # (a) 2 workers against 1.
    for n in files:
      one, two = at.get(('ours_1w', docs, n)), at.get(('ours_2w', docs, n))
      if one and two:
        whole = _ratio(two['docs_per_s'], one['docs_per_s'])
        steady = _ratio(two['steady_docs_per_s'], one['steady_docs_per_s'])
        target = (f'target >= {SCALING_TARGET}x' if docs >= LARGE_DOCS else
                  f'target >= {SCALING_TARGET}x applies from {LARGE_DOCS} '
                  f'documents')
        rounds = _round_ratios(one, two)
        out.append(f'(a) 2 workers / 1 worker, {docs} documents from {n} '
                   f'file(s): {_f(whole, ".2f", "x")} whole process, '
                   f'{_f(steady, ".2f", "x") or "n/a"} steady state ({target})'
                   + (f'; round by round {rounds}' if rounds else ''))
  for docs in sizes:  # (b) the default against the classic script.
    ours = at.get(('ours_default', docs, 1))
    if ours and ours['ratio'] is not None:
      target = SPEEDUP_TARGETS[1] if docs >= LARGE_DOCS else SPEEDUP_TARGETS[0]
      out.append(f'(b) default `pipeline.score` ({ours.get("workers") or "?"} '
                 f'worker(s)), {docs} documents: {ours["ratio"]:.2f}x the '
                 f'classic script\'s documents/s whole process, '
                 f'{_f(ours["steady_ratio"], ".2f", "x") or "n/a"} steady '
                 f'state (target >= {target:g}x)')
  for e in engine_rows(rows):  # (c) the engines against the DirectRunner.
    if e['steady_ratio'] is None and e['marginal_ratio'] is None:
      continue
    measures = [f'{_f(e["steady_ratio"], ".2f", "x")} steady state'
                if e['steady_ratio'] is not None else '']
    if e['marginal_ratio'] is not None:
      measures.append(f'{e["marginal_ratio"]:.2f}x marginal')
    out.append(f'(c) {e["variant"]} / {ENGINE_BASELINE}, {e["docs"]} '
               f'documents from {e["files"]} file(s): '
               f'{", ".join(m for m in measures if m)} '
               f'(target >= {ENGINE_TARGET}x)')
  for docs in sizes:  # Scores.
    diffs = [r['max_diff'] for r in rows if r['docs'] == docs
             and r['variant'] != 'classic' and r.get('max_diff') is not None]
    if diffs:
      out.append(f'scores at {docs} documents: largest absolute difference '
                 f'from the classic script over {len(diffs)} runs '
                 f'{max(diffs):.2e} (target <= {MAX_DIFF_TARGET:g})')
  for docs in sizes:  # Against the floor (one process).
    ours = at.get(('ours_1w', docs, 1))
    mecab, model = at.get(('floor_mecab', docs, 1)), at.get(('floor_model', docs, 1))
    if ours and mecab and model:
      floor = mecab['seconds'] + model['seconds']
      spent = ours['steady_s'] or ours['seconds']
      out.append(f'ours_1w at {docs} documents: {spent:.1f} s '
                 f'({"steady state" if ours["steady_s"] else "whole process"}) '
                 f'against a floor of {floor:.1f} s (MeCab '
                 f'{mecab["seconds"]:.1f} s + model {model["seconds"]:.1f} s): '
                 f'{spent / floor:.2f}x')
  for variant in SCORE_VARIANTS:  # Memory does not grow with the corpus.
    small, large = at.get((variant, sizes[0], 1)), at.get((variant, sizes[-1], 1))
    if small and large and small is not large and small.get('peak_rss_mb'):
      out.append(
          f'{variant} from {sizes[0]} to {sizes[-1]} documents: peak RSS '
          f'{large["peak_rss_mb"] / small["peak_rss_mb"]:.2f}x for '
          f'{sizes[-1] / sizes[0]:.0f}x the documents')
  return out


def plot(rows: list[dict[str, Any]], results_dir: str) -> str:
  """Writes ``throughput.png`` under ``results_dir``; returns its path.

  Four panels: documents/s of every variant on the largest corpus; 1 against
  2 workers from one file and from several; documents/s against corpus size;
  peak RSS per process of the scorer's variants.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(2, 2, figsize=(13, 9))
  largest = max(r['docs'] for r in rows)
  one_file = [r for r in rows if r['docs'] == largest and r['files'] == 1]
  _bars(axes[0][0], [r['variant'] for r in one_file],
        {'whole process': [r.get('docs_per_s') for r in one_file],
         'steady state': [r.get('steady_docs_per_s') for r in one_file]},
        f'documents / s, {largest} documents, 1 file')
  scaling = [r for n in sorted({r['files'] for r in rows})
             for v in ('ours_1w', 'ours_2w') for r in rows
             if r['docs'] == largest and r['files'] == n and r['variant'] == v]
  _bars(axes[0][1], [f'{r["variant"]}, {r["files"]} file(s)' for r in scaling],
        {'whole process': [r.get('docs_per_s') for r in scaling],
         'steady state': [r.get('steady_docs_per_s') for r in scaling]},
        f'1 vs 2 workers, documents / s, {largest} documents')
  ax = axes[1][0]
  for variant in ('classic',) + SCORE_VARIANTS + ('beam_stock',):
    pts = sorted((r['docs'], r.get('docs_per_s'), r.get('steady_docs_per_s'))
                 for r in rows if r['variant'] == variant and r['files'] == 1)
    if pts:
      line, = ax.plot([p[0] for p in pts], [p[1] or 0 for p in pts], 'o-',
                      label=f'{variant}')
      if any(p[2] for p in pts):
        ax.plot([p[0] for p in pts if p[2]], [p[2] for p in pts if p[2]],
                's--', color=line.get_color(),
                label=f'{variant} steady state')
  ax.set_xlabel('documents (1 file)')
  ax.set_ylabel('documents / s')
  ax.legend(fontsize=7)
  ax.set_title('throughput against corpus size')
  mem = [r for r in rows if r['docs'] == largest
         and r['variant'] in SCORE_VARIANTS]
  _bars(axes[1][1], [f'{r["variant"]}, {r["files"]} file(s)' for r in mem],
        {'all processes': [r.get('peak_rss_mb') for r in mem],
         'one worker': [worker_rss_mb(r) for r in mem]},
        f'peak RSS (MB), {largest} documents')
  fig.tight_layout()
  path = os.path.join(results_dir, 'throughput.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _bars(ax, labels: list[str], series: dict[str, list[Optional[float]]],
          title: str) -> None:
  """Horizontal grouped bars; a missing value is drawn as no bar."""
  ax.set_title(title)
  if not labels:
    ax.text(0.5, 0.5, 'not measured', ha='center', va='center',
            transform=ax.transAxes)
    return
  height = 0.8 / len(series)
  for k, (name, values) in enumerate(series.items()):
    ys = [i + k * height for i in range(len(labels))]
    ax.barh(ys, [v or 0 for v in values], height=height, label=name)
    for y, v in zip(ys, values):
      if v:
        ax.text(v, y, f' {v:.0f}', va='center', fontsize=7)
  ax.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))])
  ax.set_yticklabels(labels, fontsize=8)
  ax.invert_yaxis()
  ax.legend(fontsize=7)
