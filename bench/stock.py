"""Stock Beam ``RunInference``, as a user without this project would write it.

Rows are padded to the model's maxlen and stacked by a handler like Beam's
``TFModelHandlerNumpy`` (which itself needs tensorflow-hub and Keras 2), with
Beam's stock ``BatchElements`` batching. A module of its own, imported only
by the ``beam_stock`` variant, so the other variants do not import Beam.
"""

import json
import os

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler,
                                           PredictionResult, RunInference)

from model.bundle import load_bundle
from transforms.tokenize import LookUpTokenIds, SegmentText, TruncateTokenIds


class StackingHandler(ModelHandler):
  """Stacks fixed-length rows and calls the bundle's SavedModel."""
  def __init__(self, bundle_path: str):
    super().__init__()
    self._path = bundle_path

  def load_model(self):
    return load_bundle(self._path, check_model=False).load_signature()

  def run_inference(self, batch, model, inference_args=None):
    scores = model(np.stack(batch))
    return [PredictionResult(x, s) for x, s in zip(batch, scores)]


def _id_text(line: str):
  record = json.loads(line)
  return record['id'], record['text']


def _pad_to_maxlen(element, maxlen: int):
  from model.text import pad_batch  # pylint: disable=import-outside-toplevel
  doc_id, doc = element
  return (doc_id, len(doc.ids)), pad_batch([doc.ids], length=maxlen,
                                            padding='pre')[0]


def _json_prediction(element) -> str:
  (doc_id, n), prediction = element
  return json.dumps([doc_id, [float(x) for x in prediction.inference], n])


def score(corpus: str, bundle_path: str, outdir: str) -> dict[str, tuple]:
  """Scores a JSONL corpus in-process; returns id -> (scores, real tokens)."""
  bundle = load_bundle(bundle_path)
  with beam.Pipeline(argv=['--direct_running_mode', 'in_memory']) as p:
    _ = (p | 'Read' >> beam.io.ReadFromText(corpus)
         | 'Parse' >> beam.Map(_id_text)
         | 'Segment' >> beam.ParDo(SegmentText(bundle.mecab_args))
         | 'LookUp' >> beam.ParDo(LookUpTokenIds(bundle.path))
         | 'Truncate' >> beam.ParDo(
             TruncateTokenIds(bundle.maxlen, bundle.truncating))
         | 'PadToMaxlen' >> beam.Map(_pad_to_maxlen, bundle.maxlen)
         | 'RunInference' >> RunInference(
             KeyedModelHandler(StackingHandler(bundle.path)))
         | 'ToJson' >> beam.Map(_json_prediction)
         | 'Write' >> beam.io.WriteToText(os.path.join(outdir, 'scores'),
                                          num_shards=1,
                                          shard_name_template=''))
  records = {}
  with open(os.path.join(outdir, 'scores'), encoding='utf-8') as f:
    for line in f:
      doc_id, scores, n = json.loads(line)
      records[doc_id] = (scores, n)
  return records

