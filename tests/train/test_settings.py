"""train.settings and train.entry: bad settings stop a run before it reads data, in one line; a run that does not
finish says so in one line and an exit code that a script or train.chunks can act on."""

import math

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dgnam import DgnamError
from train.classifier import ClassifierModule
from train.entry import run_main

from helpers import _tiny_module

TINY = {"arch_kwargs": {"widths": [4, 4], "code_dim": 8}}


@pytest.mark.parametrize("settings, message", [
    ({"lambda_img": math.nan}, "--model.lambda_img=nan must be a finite number >= 0"),  # trained a NaN model before
    ({"lambda_feat": -1.0}, "--model.lambda_feat=-1.0 must be a finite number >= 0"),
    ({"lr_g": -1.0}, "--model.lr_g=-1.0 must be a finite number > 0"),
    ({"lr_d": 0.0}, "--model.lr_d=0.0 must be a finite number > 0"),
])
def test_generator_settings_are_checked_when_the_module_is_built(tmp_path, settings, message):
    with pytest.raises(DgnamError, match=message):
        _tiny_module(tmp_path, **settings)


def test_classifier_settings_and_export_path_are_checked_before_training(tmp_path, capsys):
    with pytest.raises(DgnamError, match="--model.lr=-0.1 must be a finite number > 0"):
        ClassifierModule(lr=-0.1, **TINY)
    with pytest.raises(DgnamError, match="is a folder; name the file to write"):
        ClassifierModule(export_path=str(tmp_path), **TINY)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DgnamError, match="cannot be written .* is not a writable folder"):
        ClassifierModule(export_path=str(tmp_path / "file" / "enc.pt"), **TINY)
    ClassifierModule(export_path=str(tmp_path / "new" / "enc.pt"), **TINY)  # a folder still to make is fine
    assert capsys.readouterr().err == ""
    (tmp_path / "enc.pt").write_text("the user's")
    ClassifierModule(export_path=str(tmp_path / "enc.pt"), **TINY)
    assert "enc.pt exists and is replaced when training ends" in capsys.readouterr().err


def test_resuming_against_another_encoder_is_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    trained = _tiny_module(tmp_path / "a")
    other = _tiny_module(tmp_path / "b")  # another random encoder in b/enc.pt
    checkpoint = {"state_dict": trained.state_dict()}
    with pytest.raises(DgnamError, match="trained against another encoder than --model.encoder '.*b/enc.pt'"):
        other.on_load_checkpoint(checkpoint)
    trained.on_load_checkpoint({"state_dict": trained.state_dict()})  # its own encoder resumes


@pytest.mark.parametrize("raised, code, line", [
    (DgnamError("data root 'x' does not exist; pass --data.root"), 2,
     "python -m train.x: error: data root 'x' does not exist; pass --data.root\n"),
    (KeyboardInterrupt(), 130, "python -m train.x: interrupted; resume from the last checkpoint\n"),
    (SIGTERMException(), 143, "python -m train.x: terminated; resume from the last checkpoint\n"),  # Lightning: exit 0
])
def test_a_run_that_does_not_finish_ends_in_one_line_and_its_code(raised, code, line, capsys):
    def main():
        raise raised

    assert run_main(main, "python -m train.x") == code
    assert capsys.readouterr().err == line
    assert run_main(lambda: None, "python -m train.x") == 0
    with pytest.raises(SystemExit):  # any other exit is the program's own
        run_main(lambda: (_ for _ in ()).throw(SystemExit(3)), "python -m train.x")


def test_a_classifier_run_of_four_steps_trains():
    """OneCycleLR's warm-up of a quarter of 4 steps is 0 steps long, and it divided by that length."""
    import torch
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    module = ClassifierModule(**TINY)
    data = DataLoader(TensorDataset(torch.rand(32, 3, 32, 32), torch.randint(0, 8, (32,))), batch_size=8)
    trainer = Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, accelerator="cpu")
    trainer.fit(module, train_dataloaders=data)
    assert trainer.global_step == 4


def test_a_misspelled_or_mistyped_flag_is_one_line(capsys):
    from train import generator

    for flag, said in (("--model.lamda_img=1", "unrecognized arguments: --model.lamda_img=1"),
                       ("--model.lambda_img=abc", 'Parser key "model.lambda_img": Expected a')):
        def main(flag=flag):
            generator.main(["fit", "--config", "configs/cifar10/generator.yaml", flag])

        assert run_main(main, "python -m train.generator") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err and "(see python -m train.generator fit --help)" in err
