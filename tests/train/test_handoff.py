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
    torch.testing.assert_close(rebuilt["state_dict"]["generator.convs.conv0.weight"],
                               original["dgnam"]["generator_ema"]["convs.conv0.weight"], atol=1e-3, rtol=1e-3)

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
