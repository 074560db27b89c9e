"""Tokenizer fidelity against the real tf-keras Tokenizer, on MeCab output."""

import numpy as np
import pytest

from model.text import (Segmenter, TextError, TokenizerConfig, Vocabulary,
                        pad_batch, truncate)

TEXTS = [
    'すもももももももものうち。',
    '東京タワーは333メートルです！',
    'Pythonで機械学習のモデルを学習させた。',
    'ＡＢＣ１２３とABC123は全角と半角です。',
    'ﾊﾝｶｸｶﾀｶﾅとカタカナ、ひらがな。',
    '絵文字も混ざる😀🎉テキスト👍🏽です',
    '句読点、「括弧」や『二重括弧』…！？',
    'Hello, World! This is English text.',
    '改行を\n含む\r\n文章\tタブも',
    '未知語だらけ：ぱぴぷぺぽ丸ボックス＠＃＄',
    '',
    '   ',
]

CONFIGS = [
    {},
    {'filters': ''},
    {'lower': False},
    {'num_words': 40},
    {'num_words': 40, 'oov_token': '<OOV>'},
    {'oov_token': '<OOV>'},
    {'char_level': True},
    {'filters': '、。', 'split': '、'},
]


@pytest.fixture(scope='module')
def fit_texts(corpus, wakati):
  return [wakati(d['text']) for d in corpus[:80]] + [wakati(t) for t in TEXTS[:5]]


@pytest.mark.parametrize('settings', CONFIGS, ids=lambda c: repr(c) or 'default')
def test_ids_equal_keras_tokenizer(settings, fit_texts, wakati):
  from tf_keras.preprocessing.text import Tokenizer
  keras_tok = Tokenizer(**settings)
  keras_tok.fit_on_texts(fit_texts)
  config = TokenizerConfig(**settings)
  ours = Vocabulary.fit((config.words(t) for t in fit_texts), config)
  imported = Vocabulary.from_word_index(keras_tok.word_index, config)
  assert imported.tokens == ours.tokens
  segmented = [wakati(t) for t in TEXTS]
  expected = keras_tok.texts_to_sequences(segmented)
  for text, want in zip(segmented, expected):
    got, _ = ours.lookup(config.words(text))
    assert got.tolist() == want, text


@pytest.mark.parametrize('text', TEXTS)
def test_wakati_matches_mecab(text):
  import MeCab
  assert Segmenter().segment(text) == MeCab.Tagger('-Owakati').parse(text)


@pytest.mark.parametrize('bad,fragment', [
    ('前半\x00後半', 'NUL character at offset 2'),
    (None, 'received NoneType'),
    (42, 'received int'),
    (b'bytes', 'received bytes'),
])
def test_segmenter_refuses_bad_text(bad, fragment):
  with pytest.raises(TextError, match=fragment):
    Segmenter().segment(bad)


def test_segmenter_requires_wakati():
  with pytest.raises(ValueError, match='wakati'):
    Segmenter('-Ochasen')


def test_unknown_words_are_counted_and_mapped_to_oov():
  vocab = Vocabulary(['<OOV>', '猫', '犬'], oov_token='<OOV>')
  ids, unknown = vocab.lookup(['猫', '鳥', '犬', '魚'])
  assert ids.tolist() == [2, 1, 3, 1]
  assert unknown == 2
  ids, unknown = Vocabulary(['猫']).lookup(['鳥', '猫'])
  assert ids.tolist() == [1] and unknown == 1


def test_vocabulary_file_round_trip_keeps_odd_tokens():
  tokens = ['\n', 'a\\nb', '\r', '東京', None, 'x\u2028y', '\\']
  vocab = Vocabulary(tokens)
  text = vocab.to_text()
  assert text.count('\n') == len(tokens)
  assert Vocabulary.from_text(text).tokens == tokens


def test_truncated_vocabulary_file_is_refused():
  with pytest.raises(ValueError, match='truncated'):
    Vocabulary.from_text('猫\n犬')


@pytest.mark.parametrize('side,expected', [('pre', [3, 4, 5]), ('post', [1, 2, 3])])
def test_truncate_matches_keras(side, expected):
  from tf_keras.preprocessing.sequence import pad_sequences
  ids = np.arange(1, 6, dtype=np.int32)
  assert truncate(ids, 3, side).tolist() == expected
  assert pad_sequences([ids], maxlen=3, truncating=side)[0].tolist() == expected


@pytest.mark.parametrize('padding', ['pre', 'post'])
def test_pad_batch_matches_pad_sequences(padding, rng):
  from tf_keras.preprocessing.sequence import pad_sequences
  seqs = [rng.integers(1, 50, n).astype(np.int32) for n in (1, 4, 9, 0)]
  want = pad_sequences(seqs, maxlen=12, padding=padding)
  assert np.array_equal(pad_batch(seqs, length=12, padding=padding), want)


def test_text_mecab_refuses_whole_is_segmented_in_pieces():
  import MeCab
  sentence = '猫が好きです。'
  text = sentence * 250_000  # MeCab alone refuses this ("too long sentence")
  assert MeCab.Tagger('-Owakati').parse(text) is None
  wakati = Segmenter().segment(text)
  assert wakati == MeCab.Tagger('-Owakati').parse(sentence).rstrip('\n') * 250_000 + '\n'


@pytest.mark.parametrize('split', [' ', '\\', '\\1', '|'])
def test_filters_with_unusual_split_strings(split):
  from tf_keras.preprocessing.text import text_to_word_sequence
  text = 'a]b^c-d\\e f、g'
  config = TokenizerConfig(filters=']^-\\、', split=split)
  assert config.words(text) == text_to_word_sequence(
      text, filters=']^-\\、', split=split)
