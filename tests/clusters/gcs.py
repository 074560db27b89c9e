"""A Google Cloud Storage emulator on this machine, for ``gs://`` paths.

Why this module exists: the scorer reads its bundle and input and writes its
output through Beam's filesystems, and on Dataflow those are ``gs://`` paths.
Only the real ``google-cloud-storage`` client that Beam's ``gcsio`` uses,
talking to a server, shows that every step (listing, ranged reads, the
sinks' renames, the output folder's moves, the summary) works there. PyPI's
``gcp-storage-emulator`` serves GCS's JSON API; `emulator` starts it as a
process of its own on a free port, with one bucket, and needs no pytest, so
the benchmark and the Flink tests can use it too.

How a process reaches it, found in Beam 2.77's ``apache_beam/io/gcp/gcsio.py``
and ``google-cloud-storage`` 3.x: ``GcsIO`` builds its client with
``create_storage_client(options)``, which asks Beam's ``auth`` for Google's
application default credentials and builds ``storage.Client(credentials=...)``
with them, or ``storage.Client.create_anonymous_client()`` when there are
none. No pipeline option names an endpoint; the client reads the
``STORAGE_EMULATOR_HOST`` environment variable in its constructor and then
sends every request there. So the environment alone decides it, in every
process that touches ``gs://``: the launcher, the DirectRunner's worker
processes (they inherit it), and a worker pool's SDK workers (give the pool
`Emulator.env`).

The credentials: without any, Beam's ``auth`` retries Google's lookup four
times with exponential back-off (about 25 s, with a warning) in every process
before it connects anonymously. `Emulator.env` therefore also names a
made-up, never-expiring access token in an ``authorized_user`` file
(``GOOGLE_APPLICATION_CREDENTIALS``) that the emulator accepts and ignores,
and a made-up project (``GOOGLE_CLOUD_PROJECT``). Nothing leaves this
machine: the token is refreshed never, and every request goes to the
emulator.
"""

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import subprocess
import sys
from typing import Iterator

from tests import services

_LOGGER = logging.getLogger(__name__)

EMULATOR_HOST_ENV = 'STORAGE_EMULATOR_HOST'
CREDENTIALS_ENV = 'GOOGLE_APPLICATION_CREDENTIALS'
PROJECT_ENV = 'GOOGLE_CLOUD_PROJECT'
PROJECT = 'ja-doc-scorer-emulated'
DEFAULT_BUCKET = 'ja-doc-scorer-test'
# An access token that never expires, so that nothing asks Google for one.
_CREDENTIALS = {'type': 'authorized_user', 'client_id': 'emulator',
                'client_secret': 'emulator', 'refresh_token': 'emulator',
                'token': 'emulator', 'expiry': '2999-01-01T00:00:00Z'}


@dataclasses.dataclass(frozen=True)
class Emulator:
  """A running emulator.

  Attributes:
    endpoint: its address, ``http://127.0.0.1:PORT``.
    bucket: the bucket it was started with.
    env: the environment variables a process needs to reach it; add them to
      the environment of every process that touches ``gs://``.
    log: its log file (kept after it stops).
    data_dir: where it keeps the objects (kept after it stops).
  """
  endpoint: str
  bucket: str
  env: dict[str, str]
  log: pathlib.Path
  data_dir: pathlib.Path

  def url(self, *parts: str) -> str:
    """``gs://BUCKET/PART/...``."""
    return '/'.join([f'gs://{self.bucket}', *(p.strip('/') for p in parts)])

  def process_env(self) -> dict[str, str]:
    """`tests.services.env` (this interpreter first on PATH) plus `env`."""
    return dict(services.env(), **self.env)

  @contextlib.contextmanager
  def applied(self) -> Iterator[None]:
    """Sets `env` in this process for the block (for Beam's ``FileSystems``
    here, and the processes started in the block), then restores it."""
    saved = {name: os.environ.get(name) for name in self.env}
    os.environ.update(self.env)
    try:
      yield
    finally:
      for name, value in saved.items():
        if value is None:
          os.environ.pop(name, None)
        else:
          os.environ[name] = value


@contextlib.contextmanager
def emulator(logs: pathlib.Path, *, bucket: str = DEFAULT_BUCKET
             ) -> Iterator[Emulator]:
  """Runs ``gcp-storage-emulator`` with ``bucket`` until the block ends.

  Args:
    logs: a folder for its log, its objects and the made-up credentials.
    bucket: the bucket to create.

  Yields:
    The running `Emulator`.

  Raises:
    RuntimeError: it exited before it listened (its log says why).
    TimeoutError: it did not listen within two minutes.
  """
  logs = pathlib.Path(logs)
  logs.mkdir(parents=True, exist_ok=True)
  credentials = logs / 'emulator-credentials.json'
  credentials.write_text(json.dumps(_CREDENTIALS), encoding='utf-8')
  data_dir = logs / 'gcs-data'
  log = logs / 'gcs-emulator.log'
  port = services.free_port()
  endpoint = f'http://127.0.0.1:{port}'
  with open(log, 'wb') as out:
    process = subprocess.Popen(
        [sys.executable, '-m', 'gcp_storage_emulator', '--data-dir',
         str(data_dir), 'start', '--host', '127.0.0.1', '--port', str(port),
         '--default-bucket', bucket],
        cwd=services.ROOT, env=services.env(), stdout=out,
        stderr=subprocess.STDOUT)
  try:
    services.wait_for_port(port, process, log)
    _LOGGER.info('GCS emulator at %s (bucket %s); log: %s', endpoint, bucket,
                 log)
    yield Emulator(endpoint=endpoint, bucket=bucket,
                   env={EMULATOR_HOST_ENV: endpoint,
                        CREDENTIALS_ENV: str(credentials),
                        PROJECT_ENV: PROJECT},
                   log=log, data_dir=data_dir)
  finally:
    services.stop([process])
