"""Checks a command makes before any work: each problem is one line.

Why this module exists: a wrong path or option should cost the user one
line naming the option that fixes it (exit status 2), not a traceback
minutes into a job. The three commands check their files here, through
Beam's filesystems, so ``gs://`` and local paths are checked alike.

A runner whose workers never run on this machine (Dataflow) cannot read its
disk: a local path is refused before anything is read or submitted
(`check_remote_paths`). Dataflow's ``--dry_run=True`` builds the job without
reaching Google, so its paths are checked offline instead
(`check_offline`: bucket names, a pattern that names objects).
"""

import os
import re
import shutil
from typing import Any, Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions,
                                                  TestOptions)

from model import storage
from pipeline.io import inputs
from pipeline.io.formats import INPUT_FORMATS, format_from_extension
from pipeline.io.readers import input_fields
from pipeline.io.outdir import is_local


class UsageError(ValueError):
  """A problem the user fixes with an option; the message names it."""


def check_input_file(path: str, option: str) -> None:
  """Raises `UsageError` unless ``path`` is an existing file."""
  if is_local(path) and os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a directory; give a file.')
  try:
    exists = FileSystems.exists(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{option} {path}: cannot read it ({e}).') from e
  if not exists:
    raise UsageError(f'{option} {path}: no such file.')


def check_writable_dir(path: str, option: str) -> None:
  """Raises `UsageError` unless files can be written in directory ``path``.

  Writes and deletes a probe file; a local directory created for it is
  removed again.
  """
  local = is_local(path)
  if local and os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a file; give a directory.')
  created = None  # the highest local directory the probe creates
  if local and not os.path.exists(path):
    created = os.path.abspath(path)
    while not os.path.exists(os.path.dirname(created)):
      created = os.path.dirname(created)
  probe = FileSystems.join(path, f'_probe-{os.getpid()}')
  try:
    storage.write_bytes(probe, b'')
    FileSystems.delete([probe])
  except Exception as e:  # pylint: disable=broad-except
    reason = getattr(e, 'strerror', None) or str(e).splitlines()[0]
    raise UsageError(f'{option} {path}: cannot write there ({reason}).') from e
  if created:
    shutil.rmtree(created, ignore_errors=True)


def check_bundle_output(path: str, option: str, *, overwrite: bool,
                        overwrite_option: str = '--overwrite') -> None:
  """Raises `UsageError` if a bundle cannot be written to ``path``.

  That is: ``path`` is a file, holds a bundle and ``overwrite`` is off, or
  cannot be written (checked with a probe file, removed again).
  """
  local = is_local(path)
  if local and os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f'{option} {path}: is a file; give a directory.')
  if FileSystems.exists(FileSystems.join(path, 'manifest.json')):
    if not overwrite:
      raise UsageError(f'{option} {path}: a bundle exists there; pass '
                       f'{overwrite_option} to replace it, or choose another '
                       f'{option}.')
    return
  check_writable_dir(path, option)


def check_input(pattern: str, *, input_format: str = 'auto',
                allow_empty: bool = False,
                outdir: Optional[str] = None) -> list[Any]:
  """Checks that ``pattern`` names readable input.

  Files that are no input (`pipeline.io.inputs`: names starting with ``_``
  or ``.``, anything under ``outdir``) are left out.

  Returns:
    The ``FileMetadata`` of the input files.

  Raises:
    UsageError: no such file, no match (unless ``allow_empty``), matches
      that are all outputs or hidden, a directory, or a file whose format
      the extension does not tell.
  """
  try:
    matched = inputs.match_all(pattern)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'--input {pattern}: cannot list it ({e}).') from e
  found = inputs.select(matched, pattern, outdir)
  if matched and not found:
    under = sum(1 for m in matched
                if outdir and inputs.is_under(m.path, outdir))
    raise UsageError(
        f'--input {pattern}: matches only files that are never read: '
        f'{under} under --output {outdir} and {len(matched) - under} whose '
        f'names start with _ or . (outputs of a run, hidden files); give '
        f'--input a pattern of the input files, or --output another '
        f'folder.')
  wildcard = any(c in pattern for c in '*?[')
  if is_local(pattern):
    dirs = [m.path for m in found if os.path.isdir(m.path)]
    if dirs:
      raise UsageError(
          f'--input {pattern}: {dirs[0]} is a directory; give a file '
          f'pattern such as {os.path.join(dirs[0], "*.jsonl")}.')
  if not found:
    if not wildcard:
      raise UsageError(f'--input {pattern}: no such file.')
    if not allow_empty:
      raise UsageError(f'--input {pattern}: the pattern matches no file '
                       f'(--allow_empty_input accepts that).')
  if input_format == 'auto':
    unknown = [m.path for m in found
               if format_from_extension(m.path) is None]
    if unknown:
      raise UsageError(
          f'--input: cannot tell the format of {unknown[0]} from its name'
          f'{f" (and {len(unknown) - 1} more files)" if len(unknown) > 1 else ""}; '
          f'give --input_format {"|".join(INPUT_FORMATS)}.')
  return found


# Files whose header or schema `check_fields` reads, at most (in name order):
# enough for a corpus in shards, cheap on an object store.
MAX_CHECKED_FILES = 100


def check_fields(files: Sequence[str], *, input_format: str, id_field: str,
                 text_field: str) -> None:
  """Checks that CSV and Parquet input has the id and text fields.

  A CSV header or a Parquet schema is the same for every record of its
  file, so a field it lacks would make every record an error: one line
  before any work says so instead. JSONL records are checked one by one
  (they may differ), as the job reads them. Reads the first
  `MAX_CHECKED_FILES` of ``files`` (the input, `check_input`) in name
  order.

  Raises:
    UsageError: a file's columns lack the field; names the option and the
      columns the file has.
  """
  if input_format in ('jsonl', 'text'):
    return
  for path in sorted(files)[:MAX_CHECKED_FILES]:
    fmt = input_format if input_format != 'auto' else (
        format_from_extension(path))
    columns = input_fields(path, fmt) if fmt in ('csv', 'parquet') else None
    if columns is None:
      continue
    for option, field in (('--text_field', text_field),
                          ('--id_field', id_field)):
      if field not in columns:
        shown = ', '.join(repr(c) for c in columns[:20])
        more = f' and {len(columns) - 20} more' if len(columns) > 20 else ''
        raise UsageError(
            f'{option} {field}: {path} has no such column; its columns are '
            f'{shown}{more}. Name one of them with {option}.')


def check_output(outdir: str) -> None:
  """Checks that files can be written to ``outdir`` (creating it).

  Raises:
    UsageError: ``outdir`` is a file or cannot be written.
  """
  if is_local(outdir):
    if os.path.exists(outdir) and not os.path.isdir(outdir):
      raise UsageError(f'--output {outdir}: is a file; give a directory.')
  elif any(m.path.rstrip('/') == outdir.rstrip('/') for m in
           FileSystems.match([outdir])[0].metadata_list):
    raise UsageError(f'--output {outdir}: is a file; give a directory.')
  check_writable_dir(outdir, '--output')


# --- Remote runners and Dataflow's dry run ----------------------------------

# Runners whose workers never run on this machine, by the names --runner
# takes (compared without case and without a ``Runner`` suffix): Dataflow's
# workers are Google Compute Engine VMs. Flink and Spark are not among them:
# their workers may share this machine (a local master, a cluster on this
# host) or a filesystem mounted at the same path (NFS on a Spark cluster),
# and only the cluster knows; a path they cannot read fails the job there.
_REMOTE_RUNNERS = {'dataflow': 'Dataflow', 'testdataflow': 'Dataflow'}
_PATH_OPTIONS = ('--input', '--model', '--output')
# Bucket names as Cloud Storage accepts them: 3 to 63 lowercase letters,
# digits, ``-``, ``_`` and ``.``, starting and ending with a letter or digit;
# names with dots may reach 222 characters, each dotted part at most 63.
_BUCKET = re.compile(r'[a-z0-9][a-z0-9._-]*[a-z0-9]')
_IP_ADDRESS = re.compile(r'\d+\.\d+\.\d+\.\d+')


def remote_runner(options: PipelineOptions) -> Optional[str]:
  """The name of the runner when its workers never run on this machine
  (Dataflow), else None (the DirectRunner, Flink, Spark, a portable job
  service)."""
  runner = options.view_as(StandardOptions).runner
  if runner is not None and not isinstance(runner, str):
    runner = type(runner).__name__
  name = str(runner or '').lower()
  if name.endswith('runner'):
    name = name[:-len('runner')]
  return _REMOTE_RUNNERS.get(name)


def is_local_path(path: str) -> bool:
  """Whether ``path`` names this machine's disk: no ``scheme://``, or
  ``file://``."""
  return '://' not in path or path.startswith('file://')


def check_remote_paths(paths: dict[str, str], runner: Optional[str]) -> None:
  """Raises `UsageError` if a path is on this machine while ``runner``'s
  workers run elsewhere (`remote_runner`); nothing is read or submitted.

  Args:
    paths: ``{option: path}``, e.g. ``{'--input': 'gs://b/corpus/*'}``.
    runner: `remote_runner`'s answer; None checks nothing.
  """
  if runner is None:
    return
  for option, path in paths.items():
    if is_local_path(path):
      raise UsageError(
          f'{option} {path}: a path on this machine, which {runner}\'s '
          f'workers cannot reach; copy it to Cloud Storage and give its '
          f'gs:// path.')


def is_dry_run(options: PipelineOptions) -> bool:
  """Whether the job is only built, not submitted: Dataflow's
  ``--dry_run=True`` (Beam's ``TestOptions``). Other runners ignore the
  option and run the job."""
  return bool(remote_runner(options) == 'Dataflow' and
              options.view_as(TestOptions).dry_run)


def check_bucket_name(bucket: str) -> Optional[str]:
  """Why ``bucket`` is no Cloud Storage bucket name, or None if it is one."""
  if not 3 <= len(bucket) <= (222 if '.' in bucket else 63):
    return (f'a bucket name has 3 to 63 characters (222 with dots); '
            f'received {len(bucket)}')
  if not _BUCKET.fullmatch(bucket):
    return ('a bucket name has lowercase letters, digits, -, _ and . only, '
            'and starts and ends with a letter or digit')
  parts = bucket.split('.')
  if any(not part or len(part) > 63 for part in parts):
    return 'each dot-separated part of a bucket name has 1 to 63 characters'
  if _IP_ADDRESS.fullmatch(bucket):
    return 'a bucket name is not an IP address'
  if bucket.startswith('goog') or 'google' in bucket:
    return 'a bucket name neither starts with "goog" nor contains "google"'
  return None


def check_offline(paths: dict[str, str], *, patterns: Sequence[str] = (
    '--input',)) -> None:
  """What a dry run checks of its paths without reaching them: ``gs://``
  paths name a valid bucket, and a pattern names objects in it.

  Args:
    paths: ``{option: path}``.
    patterns: the options whose path must name objects, not a bucket.

  Raises:
    UsageError: the first malformed path, naming its option.
  """
  for option, path in paths.items():
    if not path.startswith('gs://'):
      continue
    bucket, _, name = path[len('gs://'):].partition('/')
    problem = check_bucket_name(bucket)
    if problem:
      raise UsageError(f'{option} {path}: {problem}.')
    if option in patterns and not name:
      raise UsageError(f'{option} {path}: names a bucket; give a pattern of '
                       f'the files in it, such as gs://{bucket}/*.jsonl.')
