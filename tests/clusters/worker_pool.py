"""Beam's worker pool bound to one address, as on one TaskManager host.

``python -m tests.clusters.worker_pool HOST:PORT`` serves Beam's external
worker pool (`BeamFnExternalWorkerPoolServicer`, which starts one Python SDK
process per worker asked for) on that address only. Beam's own
``worker_pool_main`` binds every address of the machine, so two of them
cannot share a port; bound to distinct loopback addresses (127.0.0.2,
127.0.0.3...), each TaskManager of a one-machine cluster gets its own pool on
the same port, as each host of a real cluster does (`tests.clusters.flink`).
"""

import logging
import signal
import sys
import time

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import \
    BeamFnExternalWorkerPoolServicer
from apache_beam.utils import thread_pool_executor

_LOGGER = logging.getLogger(__name__)


def serve(address: str) -> grpc.Server:
  """Starts the pool on ``address`` (``HOST:PORT``); returns its server.

  Raises:
    OSError: the address cannot be bound.
  """
  server = grpc.server(thread_pool_executor.shared_unbounded_instance())
  if not server.add_insecure_port(address):
    raise OSError(f'cannot bind the worker pool to {address}')
  beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
      BeamFnExternalWorkerPoolServicer(use_process=True), server)
  server.start()
  return server


def main(argv: list[str]) -> int:
  if len(argv) != 1:
    print('usage: python -m tests.clusters.worker_pool HOST:PORT',
          file=sys.stderr)
    return 2
  logging.basicConfig(level=logging.INFO,
                      format='%(asctime)s %(levelname)s %(name)s %(message)s')
  # Stopped with SIGTERM like the rest of the cluster: exit through
  # KeyboardInterrupt, so that Beam's exit hook stops the SDK workers.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  server = serve(argv[0])
  _LOGGER.info('Beam worker pool at %s', argv[0])
  try:
    while True:
      time.sleep(3600)
  except KeyboardInterrupt:
    server.stop(0)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
