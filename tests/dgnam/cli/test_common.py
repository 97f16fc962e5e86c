"""dgnam.cli.common: what the commands share (argument parsing, output folders, the code prior's encoder)."""

import pytest

from dgnam.cli.common import DEFAULT_MODEL, fresh_out_dir, model_report_name, recommended_code_prior, resolve_shipped
from dgnam.errors import DgnamError

from helpers import tiny_generator


def test_code_prior_defaults_to_the_generators_recommendation():
    gen = tiny_generator()
    gen.metadata = {"code_prior": 0.2}  # what `dgnam stats --code-prior 0.2` records
    assert recommended_code_prior(None, gen) == 0.2
    assert recommended_code_prior(0.0, gen) == 0.0 and recommended_code_prior(0.5, gen) == 0.5  # asked for wins
    gen.metadata = {}
    assert recommended_code_prior(None, gen) == 0.0 and recommended_code_prior(None, None) == 0.0  # the paper's
    with pytest.raises(DgnamError, match="--code-prior must be >= 0"):
        recommended_code_prior(-0.1, gen)
    gen.metadata = {"code_prior": float("inf")}  # a generator written elsewhere: refused before any synthesis
    with pytest.raises(DgnamError, match="--code-prior must be >= 0 and finite"):
        recommended_code_prior(None, gen)


def test_out_dir_must_be_new_or_empty_and_shipped_paths_resolve(tmp_path, monkeypatch):
    assert fresh_out_dir(str(tmp_path / "new"), "net") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert fresh_out_dir(str(tmp_path / "empty"), "net") == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DgnamError, match="exists and is not empty"):
        fresh_out_dir(str(tmp_path / "full"), "net")
    # A generator names its encoder as trained (checkpoints/... from the repository root): from elsewhere,
    # that is the shipped file; a spec that is not such a path is kept as given.
    monkeypatch.chdir(tmp_path)
    assert resolve_shipped("checkpoints/cifar10/encoder.pt") == str(DEFAULT_MODEL)
    assert resolve_shipped("torchvision:alexnet") == "torchvision:alexnet"
    assert resolve_shipped("elsewhere/encoder.pt") == "elsewhere/encoder.pt"


def test_manifests_name_models_one_way(tmp_path):
    """The shipped classifier (the default) and any shipped file as ``shipped:<path>``; anything else as given."""
    assert model_report_name(None) == "shipped:cifar10/encoder.pt"
    assert model_report_name(str(DEFAULT_MODEL)) == "shipped:cifar10/encoder.pt"
    assert model_report_name("torchvision:alexnet") == "torchvision:alexnet"
    assert model_report_name("nets/mine.py:make") == "nets/mine.py:make"
