"""``--model_updates PATTERN``: the bundle that scores the watching
command's next windows.

Why this module exists: a command that keeps running (``--watch``,
`pipeline.cli.watch`) should take up a newly published model without a
restart, and keep scoring with the one it has when the new one is broken or
does not fit. It follows the same rules as
`transforms.refresh.WatchBundles` and ``ScoreDocuments(model_updates=...)``:

* a bundle is a directory matched by the pattern whose ``manifest.json``
  (written last when a bundle is saved) appears while the command runs;
  those there at the start are passed over, and each directory is looked at
  once, whatever its files' times (a copy may keep them). Publish a bundle
  as input files are published: write it under another name, then rename
  it into the pattern, so it is never seen half-copied. When several appear
  between two polls, the one with the newest manifest is tried first;
* it is validated in full (`transforms.refresh.check_bundle_update`: files,
  checksums, a probe through the model, the MeCab dictionary, the same
  outputs and MeCab arguments as the running bundle), then scores every
  window scored after it; a refused one is logged with the reason, and the
  running one keeps scoring.

The watching command scores one bounded job per window, so a window is
scored by one bundle, whose path each of its score records carries as
``model_id``.
"""

import logging
from typing import Any, Callable

from apache_beam.io.filesystems import FileSystems

from model.bundle import MANIFEST, forget_bundle
from transforms.refresh import check_bundle_update

_LOGGER = logging.getLogger(__name__)


class BundleUpdates:
  """Follows a pattern of bundle directories; holds the current scorer.

  Args:
    pattern: the bundle directories to follow (any Beam filesystem).
    path: the running bundle (``--model``).
    scorer: its `transforms.ScoreDocuments`.
    make_scorer: builds the scorer of a bundle directory that passed the
      checks.
    batch_tokens: the inference batch budget a new bundle must fit.
  """
  def __init__(self, pattern: str, path: str, scorer: Any,
               make_scorer: Callable[[str], Any], *, batch_tokens: int):
    self._manifests = FileSystems.join(pattern.rstrip('/'), MANIFEST)
    self.path = path
    self.scorer = scorer
    self._make_scorer = make_scorer
    self._batch_tokens = batch_tokens
    self._seen = {FileSystems.split(FileSystems.join(path, MANIFEST))[0]}
    self._seen.update(directory for _, directory in self._match())
    self.accepted = 0
    self.refused = 0

  def _match(self) -> list[tuple[float, str]]:
    """``(manifest time, directory)`` of each bundle the pattern matches."""
    try:
      found = FileSystems.match([self._manifests])[0].metadata_list
    except Exception as e:  # pylint: disable=broad-except
      # A folder that is not there (yet) is no failure.
      _LOGGER.debug('Could not match %s: %s', self._manifests, e)
      return []
    return [(m.last_updated_in_seconds, FileSystems.split(m.path)[0])
            for m in found]

  def poll(self) -> bool:
    """Matches the pattern once; returns whether the bundle changed."""
    new = sorted(((t, d) for t, d in self._match() if d not in self._seen),
                 reverse=True)
    changed = False
    for _, directory in new:
      self._seen.add(directory)
      if changed:
        _LOGGER.info('Passing over bundle %s: a newer one came with it.',
                     directory)
        continue
      changed = self._try(directory)
    return changed

  def _try(self, directory: str) -> bool:
    scorer = self.scorer
    try:
      check_bundle_update(directory, output_names=scorer.output_names,
                          mecab_args=scorer.mecab_args,
                          batch_tokens=self._batch_tokens)
      new_scorer = self._make_scorer(directory)
    except Exception as e:  # pylint: disable=broad-except
      self.refused += 1
      forget_bundle(directory)
      _LOGGER.warning('Refused bundle %s: %s %s keeps scoring.', directory,
                      str(e).rstrip(), self.path)
      return False
    self.accepted += 1
    # One line on the console, as each window has (`pipeline.cli.watch`).
    print(f'Bundle {directory} scores the windows from now on (was '
          f'{self.path}).', flush=True)
    self.path, self.scorer = directory, new_scorer
    return True
