"""Cross-cutting, so at the top level: training under DDP, launched through torchrun.

Generator training under DDP: two CPU processes (gloo) launched by torchrun, as on a multi-GPU node."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from dgnam import DgnamError, load_generator
from dgnam.io import atomic_save
from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint
from train.generator import check_ddp


def _tiny_setup(root):
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
    torch.manual_seed(0)
    kwargs = {"widths": [4, 4, 4, 4], "code_dim": 16}
    net = build_classifier("cifar_vgg", kwargs)  # random weights: the test is about the training machinery
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                                      input_size=32, metadata={"classes": ["blue", "red"]}), root / "enc.pt")


def test_two_process_ddp_fit_exports_once(tmp_path):
    _tiny_setup(tmp_path)
    out = tmp_path / "gen.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train.generator",
         "fit", "--config", "configs/cifar10/generator.yaml", f"--data.root={tmp_path / 'data'}", "--data.cache=false",
         "--data.batch_size=4", "--seed_everything=0", f"--model.encoder={tmp_path / 'enc.pt'}",
         f"--model.export_path={out}",
         "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true}",
         "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
         "--model.grid_every=1000", "--model.ema_decay=0.5", "--trainer.max_steps=2", "--trainer.accelerator=cpu",
         "--trainer.devices=2",
         "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.logger=false", "--trainer.callbacks=[]",
         "--trainer.enable_checkpointing=false", "--trainer.enable_model_summary=false",
         f"--trainer.default_root_dir={tmp_path}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log  # two ranks joined one group
    assert proc.stdout.count("exported ") == 1  # rank 0 alone computes the bounds and writes the file
    gen = load_generator(out)
    assert gen.metadata["iterations"] == 2 and gen.code_dim == 64
    assert gen.metadata["weights"] == "moving average, decay 0.5"  # the AveragedModel of G, kept on each rank
    torch.testing.assert_close(gen.code_upper_bound, gen.code_mean + gen.metadata["bound_k"] * gen.code_std)


def test_plain_ddp_is_refused_before_the_first_step(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        check_ddp(torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2), find_unused_parameters=True))
        with pytest.raises(DgnamError, match="ddp_find_unused_parameters_true"):
            check_ddp(torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2)))
    finally:
        dist.destroy_process_group()
