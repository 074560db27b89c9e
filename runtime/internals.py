"""Every private name of Beam, TensorFlow and CPython this package relies on.

Why this module exists: an upgrade of Beam, TensorFlow or Python may rename
or remove any private name without notice. Each one this package still uses
is here, and nowhere else, with the public route that was tried and why it
does not serve; ``tests/runtime/test_internals.py`` checks every one of
them and fails loudly when one is gone, instead of the code falling back
quietly. Beam is imported inside the functions that need it, so importing
this module stays cheap (the commands use it before Beam is imported).
"""

import atexit
from typing import Any, Optional

# --- CPython ---------------------------------------------------------------


def run_atexit_handlers() -> None:
  """Runs the ``atexit`` handlers now (``atexit._run_exitfuncs``).

  Public route tried: ``sys.exit`` runs them, but the interpreter's teardown
  follows, which is what `runtime.process_exit` skips (1.5 s for a process
  that imported TensorFlow). No public function runs the handlers without
  exiting.
  """
  atexit._run_exitfuncs()  # pylint: disable=protected-access


# --- TensorFlow ------------------------------------------------------------

# What ``import tensorflow`` (2.16 and later) imports eagerly at its end, in
# ``try/except ImportError`` (Keras 3 and tf-keras). Public route tried:
# none exists; ``TF_USE_LEGACY_KERAS`` chooses which Keras is imported, not
# whether. Marking these as absent while TensorFlow is imported skips them
# (`runtime.tensorflow_import`).
EAGER_KERAS_MODULES = ('keras.src.optimizers', 'tf_keras.src.optimizers')

# --- Beam ------------------------------------------------------------------

# The name of the thread in which Beam's DirectRunner (its FnApiRunner) waits
# on each SDK worker subprocess, and that raises ``RuntimeError('Worker
# subprocess exited with return code N')`` when the process exits with a
# non-zero code (``worker_handlers.SubprocessSdkWorkerHandler``). Public
# route tried: the runner's result and its public API say nothing of a dead
# worker, and the job then waits forever for a worker that died before its
# first bundle; the exit is reported only by that thread's exception.
SDK_WORKER_THREAD = 'run_worker'
# What Beam's data plane raises when a worker's channel closes mid-bundle.
CLOSED_CHANNEL = 'Channel closed prematurely'
# The logger and the start of the ERROR record (with the traceback of that
# closed channel) with which Beam's FnApiRunner ends a job whose worker
# process is gone (``WorkerHandlerManager.close_all``): after a stop signal
# that reached the workers first, or a worker's death, which the command
# reports in its own line. Public route tried: none says a worker is gone
# before the runner closes its handlers.
WORKER_HANDLERS_LOGGER = (
    'apache_beam.runners.portability.fn_api_runner.worker_handlers')
CLOSING_WORKER_ERROR = 'Error closing worker_handler'


def sdk_worker_exit(args: Any) -> Optional[str]:
  """The error of a ``threading.excepthook`` call that reports an SDK worker
  subprocess's exit (see `SDK_WORKER_THREAD`), else None."""
  if (args.thread is not None and args.thread.name == SDK_WORKER_THREAD and
      isinstance(args.exc_value, RuntimeError)):
    return str(args.exc_value)
  return None


def direct_runner_with_worker_command(options: Any, command: str) -> Any:
  """Beam's FnApiRunner (what the DirectRunner runs) whose SDK worker
  processes are started with the shell command ``command``.

  Built as the DirectRunner builds it (``ExtendedProvisionInfo`` with the
  encoded options), with a ``SubprocessSDKEnvironment`` of ``command``.
  Public route tried: ``--direct_running_mode multi_processing`` always runs
  ``sys.executable -m apache_beam.runners.worker.sdk_worker_main`` and takes
  no command; ``--environment_type``/``--environment_config`` are read by the
  portable runner only, whose job service changes how the job is run and
  reported (a gRPC job service, and metrics frozen at their first query).

  Args:
    options: the job's PipelineOptions, as the workers will read them.
    command: the shell command that starts one worker process.
  """
  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  from apache_beam.transforms import environments
  provision_info = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(
          pipeline_options=JobServiceHandle.encode_pipeline_options(
              options.get_all_options())))
  return fn_runner.FnApiRunner(
      default_environment=environments.SubprocessSDKEnvironment
      .from_command_string(command),
      provision_info=provision_info)
