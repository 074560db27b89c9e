"""The one Beam metrics namespace shared by every step of the scorer."""

NAMESPACE = 'ja_doc_scorer'
