"""dgnam/__init__.py: the public API (every name in ``__all__`` is there, from the module that defines it)
and the version the manifests record."""

import importlib
from pathlib import Path

import dgnam

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_public_names_come_from_their_modules_and_the_version_is_the_packages():
    public = {}
    exec("from dgnam import *", public)
    assert set(public) - {"__builtins__"} == set(dgnam.__all__)
    assert public["OUTPUT"] == "output"  # a constant: the layer name of a model's output
    for name in set(dgnam.__all__) - {"OUTPUT"}:
        value = public[name]
        home = importlib.import_module(value.__module__)
        assert home.__name__.startswith("dgnam.") and getattr(home, name) is value, name  # not a copy or a wrapper
    assert "code_prior" in dgnam.__all__ and public["visualize"].__module__ == "dgnam.engine.preferred"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert dgnam.__version__ == version
