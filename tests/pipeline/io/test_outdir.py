"""The one way a run leaves its output folder (`pipeline.io.outdir`)."""

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.io import outdir
from pipeline.local import watchdog


def _write(path, text='x\n'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)


def _read_all(folder):
  found = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, encoding='utf-8') as f:
        found[os.path.relpath(path, folder)] = f.read()
  return found


def _earlier_run(folder):
  names = {'scores-00000-of-00002.jsonl': 'a\n',
           'scores-00001-of-00002.jsonl': 'b\n',
           '_errors-00000-of-00001.jsonl': '',
           'errors-00000-of-00001.jsonl': 'old name\n',
           '_SUMMARY.json': '{}'}
  for name, text in names.items():
    _write(os.path.join(folder, name), text)
  return names


@pytest.mark.parametrize('written', [
    [],  # failed before the sinks wrote anything
    ['beam-temp-scores-1/part'],  # failed while writing
    ['beam-temp-_errors-2/part', 'scores-00000-of-00003.jsonl'],  # renaming
    ['scores-00000-of-00001.jsonl', '_errors-00000-of-00001.jsonl'],  # after
])
def test_a_failed_run_leaves_the_earlier_outputs_as_they_were(tmp_path,
                                                              written):
  folder = str(tmp_path)
  earlier = _earlier_run(folder)
  _write(os.path.join(folder, 'unrelated.txt'), 'mine\n')
  assert outdir.set_aside_earlier_outputs(folder) == len(earlier)
  for name in written:
    _write(os.path.join(folder, name), 'partial\n')
  outdir.finish(folder, succeeded=False, output_format='jsonl')
  assert _read_all(folder) == {**earlier, 'unrelated.txt': 'mine\n'}


def test_a_successful_run_drops_the_earlier_outputs(tmp_path):
  folder = str(tmp_path)
  _earlier_run(folder)
  outdir.set_aside_earlier_outputs(folder)
  _write(os.path.join(folder, 'beam-temp-scores-1', 'part'))
  _write(os.path.join(folder, 'scores-00000-of-00002.jsonl'), 'new\n')
  _write(os.path.join(folder, 'scores-00001-of-00002.jsonl'), '')
  outdir.finish(folder, succeeded=True, output_format='jsonl')
  # The empty JSONL shard goes too: pyarrow refuses empty JSON files.
  assert _read_all(folder) == {'scores-00000-of-00002.jsonl': 'new\n'}
  assert outdir.shard_names(folder, outdir.SCORES_PREFIX) == [
      'scores-00000-of-00002.jsonl']


def test_a_failure_after_the_rename_leaves_the_earlier_outputs(tmp_path):
  """The pipeline fails once its sink has put shards under final names."""
  folder = str(tmp_path / 'out')
  earlier = _earlier_run(folder)
  outdir.set_aside_earlier_outputs(folder)

  def fail(name):
    raise ValueError(f'fails after writing {name}')

  p = beam.Pipeline(options=PipelineOptions([]))
  files = (p | 'Create' >> beam.Create(['a', 'b'])
           | 'Write' >> beam.io.WriteToText(
               os.path.join(folder, outdir.SCORES_PREFIX),
               file_name_suffix='.jsonl',
               shard_name_template='-SSSSS-of-NNNNN'))
  _ = files | 'Fail' >> beam.Map(fail)
  with pytest.raises(ValueError, match='fails after writing'):
    watchdog.run_and_wait(p)
  outdir.finish(folder, succeeded=False, output_format='jsonl')
  assert _read_all(folder) == earlier
