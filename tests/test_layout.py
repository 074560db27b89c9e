"""The package's shape: layers without circles, modules of a readable size,
packages that install with all their sub-packages."""

import ast
import os
import pathlib

import pytest
from importlinter import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ('runtime', 'model', 'transforms', 'pipeline')
MAX_MODULE_LINES = 600


def test_import_contracts_hold():
  """``.importlinter``: pipeline > transforms > model > runtime, and no import
  circle inside any package, imports inside functions included."""
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    assert cli.lint_imports(config_filename=str(ROOT / '.importlinter'),
                            no_cache=True) == 0
  finally:
    os.chdir(cwd)


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
