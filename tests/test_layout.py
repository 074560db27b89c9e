"""The package's shape: layers without circles, modules of a readable size,
packages that install with all their sub-packages."""

import ast
import logging
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ('runtime', 'model', 'transforms', 'pipeline')
MAX_MODULE_LINES = 600


def test_import_contracts_hold():
  """``.importlinter``: pipeline > transforms > model > runtime, and no import
  circle inside any package, imports inside functions included.

  In a process of its own: ``lint_imports`` configures logging with
  ``dictConfig``, which disables every logger that exists by then (this
  project's included) for the rest of the process, and closes its handlers.
  """
  done = subprocess.run(
      [sys.executable, '-c', 'import sys; from importlinter import cli; '
       'sys.exit(cli.lint_imports(config_filename=sys.argv[1], '
       'no_cache=True))', str(ROOT / '.importlinter')],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout + done.stderr


def test_the_contract_check_leaves_this_process_s_loggers_alone():
  """The contract check above once disabled every logger of the process,
  so the refusal warnings of model refresh went unseen by later tests."""
  logger = logging.getLogger('transforms.refresh')
  test_import_contracts_hold()
  assert not logger.disabled


def _modules():
  for package in PACKAGES:
    yield from sorted((ROOT / package).rglob('*.py'))


@pytest.mark.parametrize('path', list(_modules()),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_why_it_exists_and_stays_readable(path):
  text = path.read_text(encoding='utf-8')
  assert len(text.splitlines()) <= MAX_MODULE_LINES, path
  if path.name != '__init__.py' or text.strip():
    assert ast.get_docstring(ast.parse(text)), f'{path}: no module docstring'


def test_every_package_is_installed_and_staged():
  """setup.py finds packages: each folder with an ``__init__.py`` under the
  four packages is one that ``find_packages`` gives."""
  import setuptools
  found = set(setuptools.find_packages(
      str(ROOT), include=[p for name in PACKAGES for p in (name, name + '.*')]))
  folders = {str(p.parent.relative_to(ROOT)).replace(os.sep, '.')
             for name in PACKAGES for p in (ROOT / name).rglob('__init__.py')}
  assert folders == found
  setup = (ROOT / 'setup.py').read_text(encoding='utf-8')
  assert 'find_packages(' in setup


def test_every_pipeline_options_class_parses_beside_the_others():
  """Beam parses every ``PipelineOptions`` subclass a process has imported
  together, so two that name the same flag break every pipeline there (the
  Kafka example's ``--window_secs`` once did ``pipeline.score``'s)."""
  import importlib  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
  defining = sorted(
      str(path.relative_to(ROOT))[:-3].replace(os.sep, '.')
      for path in [*_modules(), *(ROOT / 'examples').glob('*.py')]
      if '(PipelineOptions)' in path.read_text(encoding='utf-8'))
  assert 'examples.kafka_scoring' in defining and len(defining) >= 3
  for module in defining:
    importlib.import_module(module)
  # Raises argparse.ArgumentError ("conflicting option string") otherwise.
  options = PipelineOptions(['--window_secs', '5']).get_all_options()
  assert options['window_secs'] == 5
