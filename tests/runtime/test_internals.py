"""Every private name in `runtime.internals` is still there and still means
what the package relies on: an upgrade that renames or removes one fails
here, loudly, instead of the code falling back in silence."""

import atexit
import importlib.util
import inspect
import pathlib
import sys
import threading

import pytest

from runtime import internals


def test_cpython_names_are_there():
  assert callable(atexit._run_exitfuncs)  # pylint: disable=protected-access


def test_tensorflow_still_imports_those_keras_modules_eagerly():
  """The modules `runtime.tensorflow_import` marks absent are the ones
  TensorFlow's ``__init__`` imports at its end, inside ``try``."""
  spec = importlib.util.find_spec('tensorflow')
  source = pathlib.Path(spec.origin).read_text(encoding='utf-8')
  for name in internals.EAGER_KERAS_MODULES:
    at = source.index(f'importlib.import_module("{name}")')
    block = source[source.rindex('try:', 0, at):]
    # Inside a try that passes on ImportError: a module marked absent
    # (None in sys.modules) raises ImportError there.
    assert 'except (ImportError' in block[:block.index('pass')], name


def test_beam_names_its_worker_watcher_thread():
  from apache_beam.runners.portability.fn_api_runner import worker_handlers
  source = inspect.getsource(worker_handlers.SubprocessSdkWorkerHandler)
  assert f"name='{internals.SDK_WORKER_THREAD}'" in source


def test_beam_reports_a_worker_exit_in_that_thread():
  """Beam's own worker runner, with a worker command that exits 3, run in a
  thread of that name: the exception reaches `sdk_worker_exit`."""
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability import local_job_service
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  provision = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo())
  worker = local_job_service.SubprocessSdkWorker(b'exit 3', 'localhost:1',
                                                 provision)
  seen = []
  previous = threading.excepthook
  threading.excepthook = lambda args: seen.append(
      internals.sdk_worker_exit(args))
  try:
    thread = threading.Thread(name=internals.SDK_WORKER_THREAD,
                              target=worker.run)
    thread.start()
    thread.join(60)
  finally:
    threading.excepthook = previous
  assert len(seen) == 1 and 'return code 3' in seen[0]


def test_an_unrelated_thread_error_is_not_a_worker_exit():
  class Args:
    thread = threading.Thread(name='other')
    exc_value = RuntimeError('x')
  assert internals.sdk_worker_exit(Args()) is None
  Args.thread = threading.Thread(name=internals.SDK_WORKER_THREAD)
  Args.exc_value = ValueError('not the runner')
  assert internals.sdk_worker_exit(Args()) is None


def test_beam_still_raises_the_closed_channel_text():
  from apache_beam.runners.worker import data_plane
  assert internals.CLOSED_CHANNEL in inspect.getsource(data_plane)


def test_beam_still_logs_its_closing_error_there():
  from apache_beam.runners.portability.fn_api_runner import worker_handlers
  assert worker_handlers.__name__ == internals.WORKER_HANDLERS_LOGGER
  source = inspect.getsource(worker_handlers.WorkerHandlerManager.close_all)
  assert internals.CLOSING_WORKER_ERROR in source and '_LOGGER.error' in source


@pytest.mark.slow
def test_a_runner_with_our_worker_command_runs_a_job(tmp_path):
  """The FnApiRunner built as the DirectRunner builds it, whose worker is
  started by a command of ours (here Beam's own worker, through a shell)."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.testing.util import assert_that, equal_to
  marker = tmp_path / 'started'
  command = (f'touch {marker} && {sys.executable} -m '
             'apache_beam.runners.worker.sdk_worker_main')
  options = PipelineOptions([])
  runner = internals.direct_runner_with_worker_command(options, command)
  with beam.Pipeline(runner=runner, options=options) as p:
    out = p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2)
    assert_that(out, equal_to([2, 4, 6]))
  assert marker.exists()
