"""Beam transforms that score Japanese documents with a model bundle.

``from transforms import ScoreDocuments`` is all a pipeline needs: it takes
``(id, text)`` pairs, dicts or schema'd ``beam.Row``s and returns each record
with its scores, plus a dead-letter output.
"""

from transforms.handler import BundleModelHandler, CoreShare
from transforms.records import RecordError
from transforms.refresh import WatchBundles
from transforms.score import ScoreDocuments, ScoreDocumentsResult
from transforms.tokenize import LookUpTokenIds, SegmentText, TruncateTokenIds

__all__ = [
    'BundleModelHandler', 'CoreShare', 'LookUpTokenIds', 'RecordError', 'ScoreDocuments',
    'ScoreDocumentsResult', 'SegmentText', 'TruncateTokenIds', 'WatchBundles'
]
