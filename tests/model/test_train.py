"""Training: the masking lesson, length batches, the CLI and its inputs."""

import json

import numpy as np
import pytest

from model.text import Segmenter, truncate
from model.train import (TrainingDataError, length_batches,
                         read_training_records, train_bundle)
from pipeline.cli.train import main


def _held_out_scores(bundle, docs):
  segmenter, rules = Segmenter(), bundle.tokenizer
  seqs = [truncate(bundle.vocabulary.lookup(rules.words(segmenter.segment(
      d['text'])))[0], bundle.maxlen, bundle.truncating) for d in docs]
  predict = bundle.load_signature()
  return np.concatenate([predict(bundle.pad([s])) for s in seqs])


def _mean_correlation(scores, targets):
  return float(np.nanmean([np.corrcoef(scores[:, j], targets[:, j])[0, 1]
                           for j in range(targets.shape[1])]))


@pytest.mark.slow
def test_masking_lesson(tmp_path, corpus):
  """Masked: scores vary and follow the targets. Unmasked on long padding:
  the padding drowns the text and every document gets about one score."""
  train = corpus[:260]
  held_out = corpus[260:]
  path = tmp_path / 'train.jsonl'
  path.write_text(''.join(json.dumps(d, ensure_ascii=False) + '\n'
                          for d in train), encoding='utf-8')
  targets = np.asarray([d['scores'] for d in held_out])
  results = {}
  for masked in (True, False):
    bundle, _ = train_bundle(
        str(path), str(tmp_path / f'b{masked}'), maxlen=1000,
        padding='post', mask_zero=masked, epochs=8, verbose=0, seed=0)
    results[masked] = _held_out_scores(bundle, held_out)
  masked, unmasked = results[True], results[False]
  assert masked.std(axis=0).mean() > 0.05
  assert _mean_correlation(masked, targets) > 0.4
  # Collapse: the unmasked model's spread is a small fraction of the masked
  # one's, and it no longer follows the targets.
  assert unmasked.std(axis=0).mean() < 0.1 * masked.std(axis=0).mean()
  assert abs(_mean_correlation(unmasked, targets)) < 0.2


def test_trained_bundle_reports_validation(trained_bundle):
  report = trained_bundle.report
  assert report['words_with_vectors'] == report['vocabulary_size']
  assert len(report['validation_mse']) == 8
  assert all(v < 0.2 for v in report['validation_mse'].values())


def test_length_batches_respect_budget():
  lengths = [5, 300, 7, 290, 6, 1000, 8]
  batches = length_batches(lengths, batch_size=3, batch_tokens=700)
  assert sorted(int(i) for b in batches for i in b) == list(range(7))
  for b in batches:
    widths = [lengths[i] for i in b]
    assert len(b) <= 3
    assert len(b) == 1 or max(widths) * len(b) <= 700
  # Neighbours in length share a batch.
  assert any(set(b.tolist()) == {0, 2, 4} for b in batches)


def test_csv_training_input(tmp_path):
  path = tmp_path / 't.csv'
  path.write_text('id,text,scores\n1,猫が好きです,"[1, 0]"\n2,犬が好き,"[0, 1]"\n',
                  encoding='utf-8')
  records, sha = read_training_records(str(path))
  assert [r['scores'] for r in records] == [[1.0, 0.0], [0.0, 1.0]]
  assert len(sha) == 64


@pytest.mark.parametrize('line,fragment', [
    ('{"id": 1, "text": "猫", "scores": [1, 2]}\n{"id": 2}', ':2: expected a "text"'),
    ('{"id": 1, "text": "猫", "scores": "x"}', ':1: "scores" must be a JSON list'),
    ('{"id": 1, "text": "猫", "scores": [1]}\n{"id": 2, "text": "犬", "scores": [1, 2]}',
     ':2: 2 scores, but earlier records have 1'),
    ('not json', ':1: invalid JSON'),
])
def test_bad_training_records_name_the_line(tmp_path, line, fragment):
  path = tmp_path / 'bad.jsonl'
  path.write_text(line + '\n', encoding='utf-8')
  with pytest.raises(TrainingDataError, match=fragment):
    read_training_records(str(path))


@pytest.mark.slow
def test_cli_with_word2vec_text_vectors(tmp_path, capsys, corpus, wakati):
  from gensim.models import Word2Vec
  from model.text import TokenizerConfig
  rules = TokenizerConfig()
  sentences = [rules.words(wakati(d['text'])) for d in corpus[:40]]
  vectors = tmp_path / 'vectors.txt'
  Word2Vec(sentences, vector_size=12, min_count=1, workers=1,
           seed=0).wv.save_word2vec_format(str(vectors))
  small = tmp_path / 'small.jsonl'
  small.write_text(''.join(json.dumps(d, ensure_ascii=False) + '\n'
                           for d in corpus[:60]), encoding='utf-8')
  out = str(tmp_path / 'bundle')
  assert main(['--train', str(small), '--out', out, '--vectors', str(vectors),
               '--maxlen', '200', '--epochs', '2', '--units', '8',
               '--num_words', '100', '--oov_token', '<OOV>',
               '--output_names', ','.join(f'o{i}' for i in range(8))]) == 0
  printed = capsys.readouterr().out
  assert 'Validation MSE per output' in printed and 'o7' in printed
  from model.bundle import load_bundle
  bundle = load_bundle(out)
  assert bundle.manifest['embedding_dim'] == 12
  assert bundle.vocabulary.size == 99
  assert bundle.output_names[0] == 'o0'


def test_gensim_pickle_vectors_need_consent(tmp_path):
  from model.vectors import load_vectors
  with pytest.raises(ValueError, match='pickle'):
    load_vectors(str(tmp_path / 'vectors.kv'))
