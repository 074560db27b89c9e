"""Which matched files are input (`pipeline.io.inputs`): never an output."""

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.memfs as memfs
from pipeline.cli import score
from pipeline.io import inputs


@pytest.mark.parametrize('path,pattern,outdir,read', [
    ('data/a.jsonl', 'data/**', None, True),
    ('data/sub/a.jsonl', 'data/**', None, True),
    ('data/_errors-00000-of-00001.jsonl', 'data/*', None, False),
    ('data/scored/_SUMMARY.json', 'data/**', None, False),
    ('data/_previous/scores-00000-of-00001.jsonl', 'data/**', None, False),
    ('data/.hidden/a.jsonl', 'data/**', None, False),
    ('data/.a.jsonl.crc', 'data/*', None, False),
    ('data/scored/scores-00000-of-00001.jsonl', 'data/**', 'data/scored',
     False),
    ('data/scored2/a.jsonl', 'data/**', 'data/scored', True),
    # Named in the pattern itself: taken as given.
    ('data/_raw/a.jsonl', 'data/_raw/*.jsonl', None, True),
    ('.cache/corpus/a.jsonl', '.cache/corpus/*.jsonl', None, True),
    ('data/_raw.jsonl', 'data/_raw.jsonl', None, True),
    # ...but never under the run's own output folder.
    ('out/scores-00000-of-00001.jsonl', 'out/scores-00000-of-00001.jsonl',
     'out', False),
    ('memfs://b/in/a.jsonl', 'memfs://b/in/**', 'memfs://b/out', True),
    ('memfs://b/in/_errors-0.jsonl', 'memfs://b/in/**', None, False),
    ('memfs://b/in/out/a.jsonl', 'memfs://b/in/**', 'memfs://b/in/out/',
     False),
])
def test_what_is_input(path, pattern, outdir, read):
  assert inputs.is_input(path, pattern, outdir) is read


_NAME = st.text(st.sampled_from('ab_.-09'), min_size=1, max_size=5).filter(
    lambda n: n not in ('.', '..'))


@given(folders=st.lists(_NAME, max_size=3), name=_NAME)
def test_a_name_below_the_wildcard_that_starts_with_an_underscore_or_dot_is_skipped(
    folders, name):
  path = '/'.join(['memfs://b/data', *folders, name])
  parts = [*folders, name]
  assert inputs.is_input(path, 'memfs://b/data/**') is not any(
      p.startswith(('_', '.')) for p in parts)
  # Under the output folder: never, whatever the names.
  assert not inputs.is_input(path, 'memfs://b/data/**', 'memfs://b/data')


def test_sizes_a_filesystem_does_not_report_count_as_zero():
  class Meta:
    def __init__(self, size):
      self.size_in_bytes = size
  assert inputs.size_of([Meta(None), Meta(5), Meta(0)]) == 5


def _corpus(folder, n=6):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'docs.jsonl'), 'w', encoding='utf-8') as f:
    for i in range(n):
      f.write(json.dumps({'id': i, 'text': f'今日は{i}回目の晴れです。'},
                         ensure_ascii=False) + '\n')


def _summary(outdir):
  with open(os.path.join(outdir, '_SUMMARY.json'), encoding='utf-8') as f:
    return json.load(f)['counts']


@pytest.mark.slow
def test_an_output_inside_the_input_folder_is_never_read(tmp_path,
                                                          trained_bundle):
  data = str(tmp_path / 'data')
  _corpus(data)
  args = ['--input', os.path.join(data, '**'), '--model',
          trained_bundle.path, '--output', os.path.join(data, 'scored'),
          '--progress_secs', '0']
  for _ in range(2):  # the rerun finds the first run's outputs in data/**
    assert score.main(args) == 0
    counts = _summary(os.path.join(data, 'scored'))
    assert counts['scored'] == 6 and counts['errors'] == 0


def test_a_pattern_of_outputs_only_is_an_error_naming_both_options(
    tmp_path, trained_bundle, capsys):
  data = str(tmp_path / 'data')
  _corpus(data)
  out = os.path.join(data, 'scored')
  assert score.main(['--input', os.path.join(data, '*.jsonl'), '--model',
                     trained_bundle.path, '--output', out,
                     '--progress_secs', '0']) == 0
  capsys.readouterr()
  assert score.main(['--input', os.path.join(out, '*'), '--model',
                     trained_bundle.path, '--output', out]) == 2
  [line] = capsys.readouterr().err.strip().splitlines()
  assert line.startswith(f'error: --input {out}/*: matches only files')
  assert '--output' in line


@pytest.mark.slow
def test_outputs_on_an_object_store_are_skipped_too(tmp_path, trained_bundle):
  local = str(tmp_path / 'data')
  _corpus(local)
  with open(os.path.join(local, 'docs.jsonl'), 'rb') as f:
    memfs.put('memfs://inputs/data/docs.jsonl', f.read())
  memfs.put('memfs://inputs/data/_errors-00000-of-00001.jsonl',
              b'{"id": "x", "text": "not input"}\n')
  memfs.put('memfs://inputs/data/.tmp/docs.jsonl',
              b'{"id": "y", "text": "not input"}\n')
  out = 'memfs://inputs/data/scored'
  assert score.main(['--input', 'memfs://inputs/data/**', '--model',
                     trained_bundle.path, '--output', out,
                     '--progress_secs', '0']) == 0
  assert score.main(['--input', 'memfs://inputs/data/**', '--model',
                     trained_bundle.path, '--output', out,
                     '--progress_secs', '0']) == 0
  summary = json.loads(memfs.get(out + '/_SUMMARY.json'))
  assert summary['counts']['scored'] == 6
  assert summary['input']['files'] == 1
