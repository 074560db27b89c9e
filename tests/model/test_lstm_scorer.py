"""The faster LSTM loop: same scores as the signature, and used only then."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import lstm_scorer
from model.bundle import export_saved_model
from runtime.tensorflow_import import import_tensorflow

TOLERANCE = 1e-5


def _loaded(bundle):
  return bundle.load_signature(fast=False).loaded


def _batches(max_rows=5, max_len=140):
  # Empty documents never reach the model (the bundle holds their scores).

  lengths = st.lists(st.integers(1, max_len), min_size=1, max_size=max_rows)
  return st.tuples(lengths, st.integers(0, 2**31 - 1))


def _random_batch(bundle, lengths, seed):
  rng = np.random.default_rng(seed)
  rows = bundle.manifest['embedding_rows']
  return bundle.pad([rng.integers(1, rows, min(n, bundle.maxlen),
                                  dtype=np.int32) for n in lengths])


def test_finds_the_weights_of_a_trained_bundle(trained_bundle):
  weights = lstm_scorer.find_weights(_loaded(trained_bundle).variables)
  assert weights is not None
  assert weights.embeddings.shape == (
      trained_bundle.manifest['embedding_rows'],
      trained_bundle.manifest['embedding_dim'])
  assert weights.dense_kernel.shape == (weights.units,
                                        len(trained_bundle.output_names))


@pytest.mark.parametrize('fixture', ['trained_bundle', 'imported_bundle'])
def test_bundles_score_with_the_fast_loop(request, fixture):
  bundle = request.getfixturevalue(fixture)
  assert bundle.load_signature().kind == 'lstm'
  assert bundle.load_signature(fast=False).kind == 'signature'


@settings(max_examples=25, deadline=None)
@given(batch=_batches())
def test_fast_loop_matches_the_signature(trained_bundle, batch):
  lengths, seed = batch
  ids = _random_batch(trained_bundle, lengths, seed)
  fast = trained_bundle.load_signature()(ids)
  reference = trained_bundle.load_signature(fast=False)(ids)
  np.testing.assert_allclose(fast, reference, rtol=0, atol=TOLERANCE)


@settings(max_examples=10, deadline=None)
@given(batch=_batches(max_len=400))
def test_fast_loop_matches_the_classic_import(imported_bundle, batch):
  lengths, seed = batch
  ids = _random_batch(imported_bundle, lengths, seed)
  np.testing.assert_allclose(imported_bundle.load_signature()(ids),
                             imported_bundle.load_signature(fast=False)(ids),
                             rtol=0, atol=TOLERANCE)


def test_masked_ids_inside_a_row_keep_the_state(trained_bundle):
  """Keras masks every id 0, not only trailing ones; so does the loop."""
  ids = np.asarray([[5, 0, 0, 9, 3, 0], [5, 9, 3, 0, 0, 0]], np.int32)
  fast = trained_bundle.load_signature()(ids)
  np.testing.assert_allclose(
      fast, trained_bundle.load_signature(fast=False)(ids), atol=TOLERANCE)
  np.testing.assert_allclose(fast[0], fast[1], atol=TOLERANCE)


def test_unmasked_model_reads_padding_like_the_signature(
    tmp_path, classic_unmasked):
  from model.import_keras import import_keras_model
  bundle = import_keras_model(classic_unmasked.keras_path,
                              classic_unmasked.tokenizer_path,
                              str(tmp_path / 'bundle'),
                              maxlen=classic_unmasked.maxlen)
  assert not bundle.masked
  ids = _random_batch(bundle, [1, 30, 500], seed=4)
  assert ids.shape[1] == bundle.maxlen
  fast = bundle.load_signature()
  assert fast.kind == 'lstm'
  np.testing.assert_allclose(fast(ids), bundle.load_signature(fast=False)(ids),
                             rtol=0, atol=TOLERANCE)


def _export(tmp_path, layers, rows=30):
  import keras
  keras.utils.set_random_seed(7)
  inputs = keras.Input(shape=(None,), dtype='int32')
  x = inputs
  for layer in layers:
    x = layer(x)
  model = keras.Model(inputs, x)
  path = str(tmp_path / 'saved_model')
  export_saved_model(model, path, embedding_rows=rows)
  loaded = import_tensorflow().saved_model.load(path)
  signature = loaded.signatures['serving_default']

  def reference(ids):
    return signature(token_ids=ids)['scores'].numpy()

  return loaded, reference


def _pad(sequences):
  from model.text import pad_batch
  return pad_batch(sequences, padding='post')


@pytest.mark.parametrize('make_layers', [
    lambda k: [k.layers.Embedding(30, 4, mask_zero=True), k.layers.LSTM(
        3, activation='relu'), k.layers.Dense(2)],
    lambda k: [k.layers.Embedding(30, 4, mask_zero=True), k.layers.LSTM(3),
               k.layers.Dense(2, activation='sigmoid')],
    lambda k: [k.layers.Embedding(30, 4, mask_zero=True), k.layers.LSTM(
        3, go_backwards=True), k.layers.Dense(2)],
], ids=['lstm-relu', 'dense-sigmoid', 'go-backwards'])
def test_a_model_the_loop_does_not_compute_keeps_the_signature(
    tmp_path, make_layers):
  import keras
  loaded, reference = _export(tmp_path, make_layers(keras))
  assert lstm_scorer.find_weights(loaded.variables) is not None
  assert lstm_scorer.for_bundle(loaded, reference, masked=True, maxlen=300,
                                pad=_pad) is None


@pytest.mark.parametrize('make_layers', [
    lambda k: [k.layers.Embedding(30, 4, mask_zero=True), k.layers.GRU(3),
               k.layers.Dense(2)],
    lambda k: [k.layers.Embedding(30, 4, mask_zero=True), k.layers.LSTM(3),
               k.layers.Dense(5), k.layers.Dense(2)],
], ids=['gru', 'two-dense'])
def test_other_architectures_are_not_recognised(tmp_path, make_layers):
  import keras
  loaded, _ = _export(tmp_path, make_layers(keras))
  assert lstm_scorer.find_weights(loaded.variables) is None


def test_a_plain_model_is_recognised_and_agrees(tmp_path):
  import keras
  loaded, reference = _export(tmp_path, [
      keras.layers.Embedding(30, 4, mask_zero=True),
      keras.layers.LSTM(3, use_bias=False), keras.layers.Dense(2)])
  predict = lstm_scorer.for_bundle(loaded, reference, masked=True,
                                   maxlen=300, pad=_pad)
  assert predict is not None
  ids = _pad([np.arange(1, 30, dtype=np.int32), np.asarray([7], np.int32)])
  np.testing.assert_allclose(predict(ids), reference(ids), atol=TOLERANCE)


@pytest.mark.parametrize('bad', [-1, 'rows'])
def test_ids_outside_the_embedding_fail_loudly(trained_bundle, bad):
  rows = trained_bundle.manifest['embedding_rows']
  ids = np.asarray([[3, rows if bad == 'rows' else bad, 4]], np.int32)
  predict = trained_bundle.load_signature()
  assert predict.kind == 'lstm'
  with pytest.raises(Exception, match='token ids must be'):
    predict(ids)
