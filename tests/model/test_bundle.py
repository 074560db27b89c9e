"""Bundle validation, padding invariance, and refusals of bad bundles."""

import json
import os
import shutil

import numpy as np
import pytest

from model.bundle import BundleError, forget_bundle, load_bundle
from model.text import pad_batch


def test_manifest_records_what_decides_scores(trained_bundle):
  m = trained_bundle.manifest
  assert m['format_version'] == 1
  assert m['masked'] is True and m['fixed_length'] is False
  assert m['segmenter']['dictionary']['name'] == 'unidic-lite'
  assert len(m['outputs']) == 8 == len(m['empty_document_scores'])
  assert m['vocabulary_size'] == trained_bundle.vocabulary.size
  assert m['embedding_rows'] == m['vocabulary_size'] + 1
  assert set(m['checksums']) == {'vocabulary', 'saved_model', 'keras_model'}
  assert len(m['provenance']['training_data_sha256']) == 64
  assert 'tensorflow' in m['provenance']['packages']
  assert m['tokenizer']['oov_token'] is None


@pytest.fixture(scope='module')
def predict(trained_bundle):
  return trained_bundle.load_signature()


@pytest.mark.parametrize('side', ['pre', 'post'])
def test_padding_does_not_change_scores(trained_bundle, predict, corpus, side,
                                        wakati):
  bundle = trained_bundle
  rules = bundle.tokenizer
  for doc in corpus[:4]:
    ids, _ = bundle.vocabulary.lookup(rules.words(wakati(doc['text'])))
    own = predict(ids[None, :])
    for length in (100, 8000):
      padded = predict(pad_batch([ids], length=length, padding=side))
      np.testing.assert_allclose(padded, own, atol=1e-6)


def test_scores_vary_across_documents(trained_bundle, predict, corpus, wakati):
  rules = trained_bundle.tokenizer
  seqs = [trained_bundle.vocabulary.lookup(rules.words(wakati(d['text'])))[0]
          for d in corpus[:20]]
  scores = predict(trained_bundle.pad(seqs))
  assert scores.shape == (20, 8)
  assert scores.std(axis=0).min() > 1e-3


def test_ids_beyond_the_embedding_fail_loudly(trained_bundle, predict):
  rows = trained_bundle.manifest['embedding_rows']
  with pytest.raises(Exception, match='embedding rows'):
    predict(np.array([[1, rows]], np.int32))


@pytest.fixture
def copy(trained_bundle, tmp_path):
  path = str(tmp_path / 'bundle')
  shutil.copytree(trained_bundle.path, path)
  return path


def _edit_manifest(path, edit):
  with open(os.path.join(path, 'manifest.json'), encoding='utf-8') as f:
    manifest = json.load(f)
  edit(manifest)
  with open(os.path.join(path, 'manifest.json'), 'w', encoding='utf-8') as f:
    json.dump(manifest, f)


def _rewrite_vocabulary(path, text):
  import hashlib
  with open(os.path.join(path, 'vocabulary.txt'), 'w', encoding='utf-8') as f:
    f.write(text)
  sha = hashlib.sha256(text.encode('utf-8')).hexdigest()
  n = text.count('\n')
  def edit(m):
    m['checksums']['vocabulary'] = sha
    m['vocabulary_size'] = n
  _edit_manifest(path, edit)


def test_valid_copy_loads(copy):
  assert load_bundle(copy).vocabulary.size > 0


def test_a_forgotten_bundle_is_read_again(copy):
  kept = load_bundle(copy, check_model=False)
  assert load_bundle(copy + '/', check_model=False) is kept
  assert forget_bundle(copy + '/') == 1
  assert forget_bundle(copy) == 0
  again = load_bundle(copy, check_model=False)
  assert again is not kept and again.vocabulary.size == kept.vocabulary.size


@pytest.mark.parametrize('victim,fragment', [
    ('manifest.json', 'manifest.json: cannot read'),
    ('vocabulary.txt', 'vocabulary.txt: cannot read'),
    ('saved_model/saved_model.pb', 'no saved_model.pb'),
])
def test_missing_files_are_refused(copy, victim, fragment):
  os.remove(os.path.join(copy, victim))
  with pytest.raises(BundleError, match=fragment):
    load_bundle(copy)


def test_truncated_saved_model_is_refused(copy):
  variables = os.path.join(copy, 'saved_model', 'variables')
  data = [f for f in os.listdir(variables) if f.startswith('variables.data')]
  path = os.path.join(variables, data[0])
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(BundleError, match='saved_model: checksum differs'):
    load_bundle(copy)


def test_changed_vocabulary_is_refused(copy):
  with open(os.path.join(copy, 'vocabulary.txt'), 'a', encoding='utf-8') as f:
    f.write('余分\n')
  with pytest.raises(BundleError, match='vocabulary.txt: checksum differs'):
    load_bundle(copy)


def test_vocabulary_larger_than_embedding_is_refused(copy, trained_bundle):
  text = trained_bundle.vocabulary.to_text() + '余分な語\n'
  _rewrite_vocabulary(copy, text)
  with pytest.raises(BundleError, match='larger than the embedding'):
    load_bundle(copy)


def test_vocabulary_larger_than_model_embedding_is_refused(copy, trained_bundle):
  # Even when the manifest is edited to agree, the model itself refuses.
  text = trained_bundle.vocabulary.to_text() + '余分な語\n'
  _rewrite_vocabulary(copy, text)
  _edit_manifest(copy, lambda m: m.update(embedding_rows=m['embedding_rows'] + 1))
  with pytest.raises(BundleError, match='larger than the model'):
    load_bundle(copy)


def _drop_an_output(m):
  m['outputs'] = m['outputs'][:7]
  m['empty_document_scores'] = m['empty_document_scores'][:7]


def _grow_vocabulary_and_manifest(copy, bundle):
  _rewrite_vocabulary(copy, bundle.vocabulary.to_text() + '余分な語\n')
  _edit_manifest(copy, lambda m: m.update(embedding_rows=m['embedding_rows'] + 1))


@pytest.mark.parametrize('spoil,fragment', [
    (lambda copy, bundle: _grow_vocabulary_and_manifest(copy, bundle),
     'larger than the model'),
    (lambda copy, bundle: _edit_manifest(copy, _drop_an_output),
     'manifest names 7 outputs'),
])
def test_a_launcher_that_does_not_probe_leaves_the_probe_to_the_loader(
    copy, trained_bundle, spoil, fragment):
  """Without the probe, validation passes; the model is probed where loaded."""
  spoil(copy, trained_bundle)
  launcher = load_bundle(copy, probe_model=False)  # checksums only
  worker = load_bundle(copy, check_model=False)  # a worker in this process
  assert worker is launcher
  for _ in range(2):  # a failed probe leaves no model behind
    with pytest.raises(BundleError, match=fragment):
      worker.load_signature()


def test_a_launcher_that_does_not_probe_still_checks_the_files(copy):
  _edit_manifest(copy, lambda m: m['checksums'].update(saved_model='0' * 64))
  with pytest.raises(BundleError, match='saved_model: checksum differs'):
    load_bundle(copy, probe_model=False)


def test_newer_format_version_is_refused(copy):
  _edit_manifest(copy, lambda m: m.update(format_version=2))
  with pytest.raises(BundleError, match='format version 2 is newer'):
    load_bundle(copy)


def test_output_count_mismatch_is_refused(copy):
  def edit(m):
    m['outputs'] = m['outputs'][:7]
    m['empty_document_scores'] = m['empty_document_scores'][:7]
  _edit_manifest(copy, edit)
  with pytest.raises(BundleError, match='manifest names 7 outputs'):
    load_bundle(copy)


@pytest.mark.parametrize('bad_path', ['../outside.txt', '/etc/passwd',
                                      'gs://bucket/vocab.txt', 'a/../../b'])
def test_paths_outside_the_bundle_are_refused(copy, bad_path):
  _edit_manifest(copy, lambda m: m['files'].update(vocabulary=bad_path))
  with pytest.raises(BundleError, match='relative path inside the bundle'):
    load_bundle(copy)


def test_invalid_manifest_json_is_refused(copy):
  with open(os.path.join(copy, 'manifest.json'), 'w') as f:
    f.write('{"format_version": 1,')
  with pytest.raises(BundleError, match='manifest.json: not valid JSON'):
    load_bundle(copy)


def test_dictionary_mismatch_is_refused(copy):
  _edit_manifest(copy, lambda m: m['segmenter']['dictionary'].update(
      version='0.0.1'))
  with pytest.raises(BundleError, match='MeCab dictionary unidic-lite 0.0.1'):
    load_bundle(copy).check_environment()


def test_one_bundle_per_process_and_validation_is_reused(trained_bundle):
  """Workers in one process share a bundle; the validated model is reused."""
  from model.bundle import load_bundle
  validated = load_bundle(trained_bundle.path)  # what construction does
  predict = validated.load_signature()
  again = load_bundle(trained_bundle.path, check_model=False)  # a worker
  assert again is validated
  assert again.load_signature() is predict  # no second SavedModel load
  assert load_bundle(trained_bundle.path + '/', check_model=False) is again
