"""train.handoff: a run packed beside its fp16 export resumes elsewhere at the same step, D and all."""

import pytest
import torch

from dgnam import DgnamError, load_generator
from train import generator, handoff

from helpers import _common, _train_encoder


def _args(tmp_path, image_root, enc_path, gen_path, ckpt_dir):
    return ["fit", "--config", "configs/cifar10/generator.yaml", *_common(tmp_path, image_root, "gen"),
            "--trainer.max_epochs=-1", f"--model.encoder={enc_path}", f"--model.export_path={gen_path}",
            "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true}",
            "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
            "--model.ema_decay=0.5", "--model.export_dtype=float16", "--trainer.limit_val_batches=0",
            f"--trainer.callbacks.init_args.dirpath={ckpt_dir}", "--trainer.callbacks.init_args.every_n_train_steps=1"]


def test_pack_then_unpack_resumes_at_the_same_step(tmp_path, image_root):
    enc_path = _train_encoder(tmp_path, image_root)
    gen_path, ckpt_dir = tmp_path / "gen.pt", tmp_path / "ckpt"
    args = _args(tmp_path, image_root, enc_path, gen_path, ckpt_dir)
    generator.main([*args, "--trainer.max_steps=3"])

    stored = torch.load(gen_path, weights_only=True)
    assert stored["state_dict"]["convs.conv0.weight"].dtype == torch.float16  # half the file
    assert stored["state_dict"]["code_upper_bound"].dtype == torch.float32  # the box stays exact
    assert load_generator(gen_path).convs["conv0"].weight.dtype == torch.float32  # loaded back as float32

    packed = tmp_path / "handoff.pt"
    handoff.pack(ckpt_dir / "last.ckpt", gen_path, packed)
    assert packed.stat().st_size < (ckpt_dir / "last.ckpt").stat().st_size / 3

    elsewhere = tmp_path / "elsewhere" / "last.ckpt"
    handoff.unpack(packed, gen_path, elsewhere)
    rebuilt = torch.load(elsewhere, weights_only=True)
    original = torch.load(ckpt_dir / "last.ckpt", weights_only=True)
    assert rebuilt["global_step"] == 3 and rebuilt["hyper_parameters"]["init_generator"] is None
    d_key = "discriminator.head.4.weight"
    torch.testing.assert_close(rebuilt["state_dict"][d_key], original["state_dict"][d_key], atol=1e-3, rtol=1e-3)
    average = original["state_dict"]["generator_ema.module.convs.conv0.weight"]
    torch.testing.assert_close(rebuilt["state_dict"]["generator.convs.conv0.weight"], average, atol=1e-3, rtol=1e-3)
    # The average restarts from the exported weights (one update counted), inside the state dict.
    assert torch.equal(rebuilt["state_dict"]["generator_ema.module.convs.conv0.weight"],
                       rebuilt["state_dict"]["generator.convs.conv0.weight"])
    assert int(rebuilt["state_dict"]["generator_ema.n_averaged"]) == 1 and "generator_ema" not in rebuilt["dgnam"]
    assert rebuilt["callbacks"]["Timer"] == original["callbacks"]["Timer"]  # the training seconds carry over

    # A checkpoint saved before the average lived in the state dict packs the same.
    legacy = {**original, "state_dict": {k: v for k, v in original["state_dict"].items()
                                         if not k.startswith("generator_ema.")},
              "dgnam": {**original["dgnam"], "generator_ema": {
                  k[len("generator_ema.module."):]: v for k, v in original["state_dict"].items()
                  if k.startswith("generator_ema.module.") and k[len("generator_ema.module."):] in
                  dict(load_generator(gen_path).named_parameters())}}}
    torch.save(legacy, tmp_path / "legacy.ckpt")
    handoff.pack(tmp_path / "legacy.ckpt", gen_path, tmp_path / "legacy_handoff.pt")
    from_legacy = torch.load(tmp_path / "legacy_handoff.pt", weights_only=True)
    assert from_legacy["dgnam"] == torch.load(packed, weights_only=True)["dgnam"]

    with pytest.raises(DgnamError, match="already at or past 3"):  # a real checkpoint is never overwritten
        handoff.unpack(packed, gen_path, elsewhere)

    # Resume from the rebuilt checkpoint: the step count goes on from 3, the export changes.
    generator.main([*args, "--trainer.max_steps=5", f"--ckpt_path={elsewhere}"])
    resumed = torch.load(gen_path, weights_only=True)
    assert resumed["metadata"]["iterations"] == 5
    assert not torch.equal(resumed["state_dict"]["convs.conv0.weight"], stored["state_dict"]["convs.conv0.weight"])

    # The pair must match: a handoff of step 3 against the export of step 5 is refused in one line.
    with pytest.raises(DgnamError, match="exported at 5 iterations, the run is at 3"):
        handoff.unpack(packed, gen_path, tmp_path / "again" / "last.ckpt")


def test_the_shipped_fc6_handoff_resumes_at_15000(tmp_path):
    """The shipped handoff (written before the average was an AveragedModel) still rebuilds a checkpoint
    that Lightning resumes at its step, with G's average, D's balance state and the training seconds."""
    from pathlib import Path

    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    shipped = Path("checkpoints/cifar10")
    packed, exported = shipped / "generator_fc6_training.pt", shipped / "generator_fc6.pt"
    if not (packed.is_file() and exported.is_file() and (shipped / "encoder_fc6.pt").is_file()):
        pytest.skip("shipped fc6 files absent")
    out = tmp_path / "ckpt" / "last.ckpt"
    assert handoff.main(["unpack", str(packed), str(exported), str(out)]) == 0  # as reproduce.sh fc6-continue runs it
    rebuilt = torch.load(out, weights_only=True)
    assert rebuilt["global_step"] == 15000 and int(rebuilt["state_dict"]["generator_ema.n_averaged"]) == 1

    settings = {k: v for k, v in rebuilt["hyper_parameters"].items() if not k.startswith("_")}
    module = generator.GeneratorModule(**{**settings, "export_path": None})
    started = []

    class FirstStep(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            started.append((trainer.global_step, pl_module.has_average, pl_module.train_seconds()))

    trainer = L.Trainer(max_steps=15001, accelerator="cpu", logger=False, enable_checkpointing=False,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[FirstStep()])
    images = DataLoader(TensorDataset(torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)), batch_size=2)
    trainer.fit(module, train_dataloaders=images, ckpt_path=out)
    step, averaged, seconds = started[0]
    assert step == 15000 and averaged and seconds >= 7246  # the shipped run's 2 hours go on counting
    assert trainer.global_step == 15001 and int(module.generator_ema.n_averaged) == 2


def test_unreadable_checkpoints_are_one_line(tmp_path, capsys):
    from train.classifier import ClassifierModule
    from train.cli import module_from_checkpoint
    from train.generator import GeneratorModule

    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    assert handoff.main(["pack", str(corrupt), str(tmp_path / "g.pt"), str(tmp_path / "h.pt")]) == 2
    assert handoff.main(["unpack", str(corrupt), str(tmp_path / "g.pt"), str(tmp_path / "c.ckpt")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("cannot read" in line and "corrupt.ckpt" in line for line in err)
    classifier = ClassifierModule(arch_kwargs={"widths": [4, 4], "code_dim": 8})
    torch.save({"hyper_parameters": dict(classifier.hparams), "state_dict": classifier.state_dict()},
               tmp_path / "enc.ckpt")
    with pytest.raises(DgnamError, match="is not a checkpoint of GeneratorModule .*export it with the program"):
        module_from_checkpoint(GeneratorModule, str(tmp_path / "enc.ckpt"))  # the encoder's, given to export G
    assert not (tmp_path / "h.pt").exists() and not (tmp_path / "c.ckpt").exists()
