"""train.cli: what every training entry point shares (the resume notes, export, rebuilding a module from
its checkpoint); LightningCLI runs end to end in test_generator.py and test_code_sampler.py."""

import pytest
import torch

from dgnam.errors import DgnamError
from train.classifier import ClassifierModule
from train.cli import _note_overridden, _plain, module_from_checkpoint, run


def test_resume_notes_name_each_config_value_the_checkpoint_overrides(capsys):
    configured = {"lambda_img": 2.0, "lambda_class": 0.25, "betas": [0.5, 0.999], "lr_g": 1e-4}
    restored = {"lambda_img": 1.0, "lambda_class": 0.0, "betas": (0.5, 0.999), "lr_g": 1e-4}
    _note_overridden(configured, restored, predated={"lambda_class"})
    assert capsys.readouterr().err.splitlines() == [
        "resuming: model.lambda_img = 1.0, the checkpoint's, not the config's 2.0; pass --model.lambda_img on "
        "the command line to change it",
        "resuming: model.lambda_class = 0.0, the module's default (the checkpoint predates it), not the config's "
        "0.25; pass --model.lambda_class on the command line to change it",
    ]  # not betas: a YAML list and a checkpoint's tuple are the same setting
    assert _plain({"a": (1, [2, (3,)])}) == {"a": [1, [2, [3]]]}


def test_export_subcommand_and_module_from_checkpoint(tmp_path):
    calls = []
    (tmp_path / "last.ckpt").write_bytes(b"")
    last = str(tmp_path / "last.ckpt")
    run(None, None, lambda ckpt, out: calls.append((ckpt, out)), "train.x", ["export", last, "out.pt"])
    assert calls == [(last, "out.pt")]
    with pytest.raises(SystemExit, match="usage: python -m train.x export LIGHTNING_CKPT OUT.pt"):
        run(None, None, lambda ckpt, out: None, "train.x", ["export", last])
    with pytest.raises(DgnamError, match="checkpoint 'nope.ckpt' does not exist"):
        run(None, None, lambda ckpt, out: None, "train.x", ["export", "nope.ckpt", "out.pt"])

    torch.manual_seed(0)
    module = ClassifierModule(arch_kwargs={"widths": [4, 4], "code_dim": 8}, lr=0.05)
    # What Lightning saves, with the key LightningCLI adds to the hyperparameters.
    torch.save({"hyper_parameters": {**module.hparams, "_instantiator": "lightning.pytorch.cli.instantiate_module"},
                "state_dict": module.state_dict()}, tmp_path / "last.ckpt")
    rebuilt, state = module_from_checkpoint(ClassifierModule, str(tmp_path / "last.ckpt"))
    assert rebuilt.hparams.lr == 0.05 and "_instantiator" not in rebuilt.hparams
    for name, value in module.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value), name
    assert set(state) == {"hyper_parameters", "state_dict"}


def test_train_cli_overrides_no_private_lightning_method():
    from lightning.pytorch.cli import LightningCLI

    from train.cli import TrainCLI

    overridden = {name for name in vars(TrainCLI) if hasattr(LightningCLI, name) and not name.startswith("__")}
    assert overridden == {"parse_arguments", "before_instantiate_classes"}  # public hooks only
