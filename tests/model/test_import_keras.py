"""Importing models trained the classic way, masked and unmasked."""

import logging

import numpy as np
import pytest

from model.import_keras import ImportRefused, import_keras_model
from pipeline.cli.import_model import main
from model.network import ModelFileError
from tests.conftest import mixed_length_texts


def _bundle_scores(bundle, texts, wakati):
  from model.text import truncate
  rules = bundle.tokenizer
  seqs = [truncate(bundle.vocabulary.lookup(rules.words(wakati(t)))[0],
                   bundle.maxlen, bundle.truncating) for t in texts]
  return bundle.load_signature()(bundle.pad(seqs))


@pytest.mark.parametrize('fmt', ['keras', 'h5'])
@pytest.mark.parametrize('masked', [True, False])
def test_import_round_trip(fmt, masked, classic, classic_unmasked, corpus,
                           wakati, tmp_path, caplog):
  source = classic if masked else classic_unmasked
  path = source.keras_path if fmt == 'keras' else source.h5_path
  with caplog.at_level(logging.WARNING):
    bundle = import_keras_model(path, source.tokenizer_path,
                                str(tmp_path / 'b'), maxlen=source.maxlen)
  assert bundle.masked is masked
  assert bundle.manifest['fixed_length'] is (not masked)
  assert ('same scores' in caplog.text) is (not masked)
  texts = mixed_length_texts(corpus)
  np.testing.assert_allclose(_bundle_scores(bundle, texts, wakati),
                             source.predict(texts), atol=1e-5)
  # An empty document is an all-padding row, as Keras sees it.
  np.testing.assert_allclose(bundle.empty_document_scores,
                             source.predict([''])[0], atol=1e-6)


def test_import_with_num_words_and_oov(tmp_path, corpus, wakati):
  from tests.conftest import Classic
  source = Classic(tmp_path / 'src', corpus[:60], wakati, mask_zero=True,
                   oov_token='<OOV>', num_words=50)
  bundle = import_keras_model(source.keras_path, source.tokenizer_path,
                              str(tmp_path / 'b'), maxlen=source.maxlen)
  assert bundle.vocabulary.size == 49
  texts = mixed_length_texts(corpus)
  np.testing.assert_allclose(_bundle_scores(bundle, texts, wakati),
                             source.predict(texts), atol=1e-5)


def test_maxlen_mismatch_is_refused(classic, tmp_path):
  with pytest.raises(ModelFileError, match='length 120, but --maxlen is 99'):
    import_keras_model(classic.keras_path, classic.tokenizer_path,
                       str(tmp_path / 'b'), maxlen=99)


def test_lambda_layers_are_refused(tmp_path, classic):
  import tf_keras
  model = tf_keras.Sequential([
      tf_keras.layers.Embedding(10, 4, input_length=5, mask_zero=True),
      tf_keras.layers.Lambda(lambda x: x * 2),
      tf_keras.layers.LSTM(3),
      tf_keras.layers.Dense(8),
  ])
  path = str(tmp_path / 'lambda.keras')
  model.save(path)
  with pytest.raises(ModelFileError, match='Lambda'):
    import_keras_model(path, classic.tokenizer_path, str(tmp_path / 'b'),
                       maxlen=5)


def test_embedding_smaller_than_tokenizer_is_refused(tmp_path, classic):
  import tf_keras
  model = tf_keras.Sequential([
      tf_keras.layers.Embedding(5, 4, input_length=classic.maxlen,
                                mask_zero=True),
      tf_keras.layers.LSTM(3),
      tf_keras.layers.Dense(8),
  ])
  path = str(tmp_path / 'small.h5')
  model.save(path)
  with pytest.raises(ValueError, match='only 5 rows'):
    import_keras_model(path, classic.tokenizer_path, str(tmp_path / 'b'),
                       maxlen=classic.maxlen)


def test_probe_mismatch_refuses_and_writes_nothing(classic, tmp_path):
  out = tmp_path / 'b'
  with pytest.raises(ImportRefused, match='nothing written'):
    import_keras_model(classic.keras_path, classic.tokenizer_path, str(out),
                       maxlen=classic.maxlen, tolerance=-1.0)
  assert not out.exists()


def test_cli(classic, tmp_path, capsys):
  out = str(tmp_path / 'cli')
  assert main(['--model', classic.h5_path, '--tokenizer',
               classic.tokenizer_path, '--maxlen', str(classic.maxlen),
               '--padding', 'pre', '--truncating', 'pre', '--out', out]) == 0
  assert 'masked' in capsys.readouterr().out
  # Writing again without --overwrite is refused with a clear message.
  assert main(['--model', classic.h5_path, '--tokenizer',
               classic.tokenizer_path, '--maxlen', str(classic.maxlen),
               '--out', out]) == 2
  assert 'a bundle exists there' in capsys.readouterr().err
