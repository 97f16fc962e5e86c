"""train.code_sampler: a GAN in a generator's code space, its training entry point, and ``dgnam sample`` on
what it trains."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dgnam import DgnamError
from dgnam.cli.main import main as cli_main
from dgnam.io import atomic_save
from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint
from dgnam.prior.generator import UpconvGenerator, cifar_arch
from dgnam.prior.sampler import CodeSampler, load_code_sampler
from train import code_sampler
from train.networks import CodeCritic


@pytest.fixture(scope="module")
def prior_files(tmp_path_factory):
    """An untrained tiny encoder (relu4_2 = 4x4x4 = 64 values) and a generator that names it."""
    tmp = tmp_path_factory.mktemp("prior")
    torch.manual_seed(0)
    kwargs = {"widths": [4, 4, 4, 4], "code_dim": 16}
    net = build_classifier("cifar_vgg", kwargs)
    enc = tmp / "enc.pt"
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                                      input_size=32, metadata={"classes": ["a", "b"]}), enc)
    gen = UpconvGenerator(cifar_arch(code_dim=64, start_channels=4, widths=(8, 8, 8), spatial_code=True),
                          encoder_layer="features.relu4_2", encoder=str(enc))
    gen_path = tmp / "gen.pt"
    gen.save(gen_path, {"iterations": 7})
    root = tmp / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return enc, gen_path, root


def test_r1_is_the_squared_gradient_norm_per_sample():
    """For a linear critic w . x the R1 term is |w|^2, summed over every unit or pixel (4-D inputs too)."""
    for shape in [(10,), (3, 8, 8)]:
        w = torch.randn(*shape)
        real = torch.rand(5, *shape)

        def linear(x, w=w):
            return (x * w).flatten(1).sum(1)
        losses = code_sampler.critic_losses(linear, real, real + 1, r1_gamma=2.0)
        torch.testing.assert_close(losses["r1"], w.pow(2).sum())
        gan = F.softplus(-linear(real)).mean() + F.softplus(linear(real + 1)).mean()
        torch.testing.assert_close(losses["d"], gan + w.pow(2).sum())  # gamma / 2 = 1


def test_gan_in_code_space_learns_a_sparse_distribution():
    """A few hundred steps of the sampler's losses move its codes to the real codes' sparsity and scale.

    Real codes: relu of a correlated Gaussian (about half exact zeros, unit 0 twice as large as unit 1).
    """
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.5, 0.0, 0.2], [0.0, 0.5, 0.3, 0.2], [0.1, 0.0, 0.3, 0.4]])
    scale = torch.tensor([2.0, 1.0, 1.0, 0.5])

    def real_codes(n):
        return F.relu(torch.randn(n, 3) @ mix * scale)

    sampler = CodeSampler([4], latent_dim=8, width=64)
    critic = CodeCritic([4], width=64)
    opt_s = torch.optim.Adam(sampler.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_c = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.0, 0.99))
    before = sampler.sample(4000)
    for _ in range(400):
        real = real_codes(128)
        fake = sampler(torch.randn(128, 8))
        opt_c.zero_grad()
        code_sampler.critic_losses(critic, real, fake, r1_gamma=1.0)["d"].backward()
        opt_c.step()
        opt_s.zero_grad()
        F.softplus(-critic(fake)).mean().backward()
        opt_s.step()
    after, target = sampler.sample(4000), real_codes(4000)

    def error(codes):
        return float((codes.mean(0) - target.mean(0)).abs().sum() + ((codes == 0).float().mean(0)
                                                                     - (target == 0).float().mean(0)).abs().sum())
    # GAN training oscillates (0.15-0.55 over 1,200 steps here); an untrained sampler is at about 2.
    assert error(after) < 0.7 < 1.5 < error(before)
    assert float(after[:, 0].mean()) > 1.4 * float(after[:, 1].mean())  # the unit scales, not only the average


def test_train_resume_export_and_sample_cli(tmp_path, prior_files, capsys):
    enc, gen_path, root = prior_files
    out = tmp_path / "sampler.pt"
    ckpt_dir = tmp_path / "ckpt"
    args = ["fit", "--config", "configs/cifar10/code_sampler.yaml", f"--data.root={root}",
            f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=8", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}", f"--model.generator={gen_path}",
            "--data.subset=20", "--model.num_classes=0", "--model.latent_dim=8", "--model.width=8",
            "--model.critic_width=8", "--model.grid_every=2",
            f"--model.export_path={out}", f"--trainer.callbacks.init_args.dirpath={ckpt_dir}",
            "--trainer.callbacks.init_args.every_n_train_steps=1"]
    code_sampler.main([*args, "--trainer.max_steps=3"])
    first = load_code_sampler(out)
    assert first.metadata["iterations"] == 3 and first.metadata["generator_iterations"] == 7
    assert first.code_shape == (4, 4, 4) and first.encoder_layer == "features.relu4_2"
    assert list((tmp_path / "logs").rglob("samples_000002.png"))
    code_sampler.main([*args, "--trainer.max_steps=5", f"--ckpt_path={ckpt_dir / 'last.ckpt'}"])
    resumed = load_code_sampler(out)
    assert resumed.metadata["iterations"] == 5  # continued from 3
    assert not torch.equal(resumed.state_dict()["stem.weight"], first.state_dict()["stem.weight"])
    again = tmp_path / "again.pt"
    code_sampler.main(["export", str(ckpt_dir / "last.ckpt"), str(again)])
    assert torch.equal(load_code_sampler(again).sample(4), resumed.sample(4))

    # Fine-tuning from the exported sampler with the image critic on (trained through the frozen G).
    tuned = tmp_path / "tuned.pt"
    fine = [a for a in args if not a.startswith(("--model.export_path", "--trainer.callbacks.init_args.dirpath"))]
    code_sampler.main([*fine, "--trainer.max_steps=2", f"--model.init_sampler={out}", "--model.lambda_image=1.0",
                       f"--model.export_path={tuned}", f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt2'}"])
    tuned_sampler = load_code_sampler(tuned)
    assert tuned_sampler.metadata["lambda_image"] == 1.0 and tuned_sampler.metadata["iterations"] == 2
    assert not torch.equal(tuned_sampler.state_dict()["stem.weight"], resumed.state_dict()["stem.weight"])
    with pytest.raises(DgnamError, match="another width or depth"):
        code_sampler.CodeSamplerModule(generator=str(gen_path), latent_dim=8, width=16, init_sampler=str(out))
    with pytest.raises(DgnamError, match="overwrite its own start"):
        code_sampler.CodeSamplerModule(generator=str(gen_path), latent_dim=8, width=8, init_sampler=str(out),
                                       export_path=str(out))
    # An encoder given on the command line is the one the sampler records.
    other_enc = tmp_path / "other_enc.pt"
    other_enc.write_bytes(enc.read_bytes())
    module = code_sampler.CodeSamplerModule(generator=str(gen_path), encoder=str(other_enc), latent_dim=8, width=8)
    assert module.sampler.encoder == str(other_enc) != load_code_sampler(out).encoder

    # Synthesis from the sampler's start codes: recorded in the manifest, and starts differ from the default's
    # (on the CPU: on CUDA the CLI's bf16 autocast rounds this tiny model's differing starts to one value).
    runs = {}
    for name, extra in (("default", []), ("sampled", ["--init-sampler", str(out)])):
        assert cli_main(["synthesize", "--model", str(enc), "--generator", str(gen_path), "--units", "0-1",
                         "--steps", "2", "--quiet", "--device", "cpu", "--out", str(tmp_path / name), *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "manifest.json").read_text())
    assert runs["sampled"]["settings"]["init_sampler"] == str(out)
    assert runs["default"]["settings"]["init_sampler"] is None
    starts = {name: [e["start_activation"] for e in run["images"]] for name, run in runs.items()}
    assert starts["default"] != starts["sampled"]
    assert cli_main(["synthesize", "--model", str(enc), "--param", "pixel", "--init-sampler", str(out),
                     "--out", str(tmp_path / "pix")]) == 2
    assert "--init-sampler" in capsys.readouterr().err

    png = tmp_path / "samples.png"
    assert cli_main(["sample", "--generator", str(gen_path), "--sampler", str(out), "--n", "20", "--out",
                     str(png)]) == 0
    with Image.open(png) as im:
        assert im.size == (16 * 33 + 1, 2 * 33 + 1)  # 16 per row, 32 px tiles with 1 px padding
    capsys.readouterr()
    assert cli_main(["sample", "--generator", str(gen_path), "--sampler", str(out), "--out", str(png)]) == 2
    assert "exists" in capsys.readouterr().err
    other = UpconvGenerator(cifar_arch(code_dim=32, fc_dims=(8,), start_channels=4, widths=(4, 4, 4)))
    other.save(tmp_path / "other.pt")
    assert cli_main(["sample", "--generator", str(tmp_path / "other.pt"), "--sampler", str(out),
                     "--out", str(tmp_path / "x.png")]) == 2
    assert "train a sampler for this generator" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_projection_critic_teaches_the_sampler_each_class_its_own_units():
    """Two classes that use opposite units: after a conditional GAN's few hundred steps, each class's
    samples put their mass on that class's unit, which an unconditional fit cannot do per class."""
    torch.manual_seed(0)

    def real_codes(labels):
        on = F.one_hot(labels, 2).float()  # class 0 -> unit 0, class 1 -> unit 1
        return F.relu(on * (1.5 + 0.3 * torch.randn(len(labels), 2)) + 0.1 * torch.randn(len(labels), 2))

    sampler = CodeSampler([2], latent_dim=4, width=64, num_classes=2)
    critic = CodeCritic([2], width=64, num_classes=2)
    opt_s = torch.optim.Adam(sampler.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_c = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.0, 0.99))

    def gap():  # unit 0 minus unit 1, for class 0's samples and for class 1's
        codes = sampler.sample(2000, labels=torch.arange(2000) % 2)
        return [float((codes[cls::2, 0] - codes[cls::2, 1]).mean()) for cls in (0, 1)]
    for _ in range(300):
        labels = torch.randint(2, (128,))
        fake = sampler(torch.randn(128, 4), labels)
        opt_c.zero_grad()
        code_sampler.critic_losses(critic, real_codes(labels), fake, r1_gamma=1.0, labels=labels)["d"].backward()
        opt_c.step()
        opt_s.zero_grad()
        F.softplus(-critic(fake, labels)).mean().backward()
        opt_s.step()
    class0, class1 = gap()
    # Real: +1.5 for class 0, -1.5 for class 1. Ignoring the class would give the same gap for both.
    assert class0 > 0.8 and class1 < -0.8, (class0, class1)
    with pytest.raises(DgnamError, match="needs labels"):
        critic(torch.zeros(3, 2))


def test_conditional_training_and_sample_cli_by_class(tmp_path, prior_files, capsys):
    enc, gen_path, root = prior_files
    out = tmp_path / "cond.pt"
    args = ["fit", "--config", "configs/cifar10/code_sampler.yaml", f"--data.root={root}",
            f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=8", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}", f"--model.generator={gen_path}",
            "--model.latent_dim=8", "--model.width=8", "--model.critic_width=8", "--model.grid_every=2",
            f"--model.export_path={out}", f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
            "--trainer.max_steps=2"]
    code_sampler.main([*args, "--model.num_classes=2"])
    sampler = load_code_sampler(out)
    assert sampler.num_classes == 2 and sampler.classes == ["a", "b"] and sampler.metadata["num_classes"] == 2
    assert list((tmp_path / "logs").rglob("samples_*.png"))  # the grid draws each class
    with pytest.raises(DgnamError, match="--model.num_classes 2"):
        code_sampler.main([*args, "--model.num_classes=3", f"--model.export_path={tmp_path / 'three.pt'}"])
    assert not (tmp_path / "three.pt").exists()
    # Stage 2 with a class-conditional image critic, from the conditional stage 1.
    tuned = tmp_path / "tuned.pt"
    stage2 = [a for a in args if not a.startswith(("--model.export_path", "--trainer.callbacks.init_args.dirpath"))]
    code_sampler.main([*stage2, "--model.num_classes=2", f"--model.init_sampler={out}", "--model.lambda_image=1.0",
                       "--model.conditional_image_critic=true", f"--model.export_path={tuned}",
                       f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt2'}"])
    tuned_sampler = load_code_sampler(tuned)
    assert tuned_sampler.metadata["conditional_image_critic"] is True and tuned_sampler.classes == ["a", "b"]
    assert not torch.equal(tuned_sampler.state_dict()["stem.weight"], sampler.state_dict()["stem.weight"])
    with pytest.raises(DgnamError, match="needs --model.num_classes and --model.lambda_image"):
        code_sampler.CodeSamplerModule(generator=str(gen_path), latent_dim=8, width=8, conditional_image_critic=True)

    png = tmp_path / "by_class.png"
    assert cli_main(["sample", "--generator", str(gen_path), "--sampler", str(out), "--classes", "b,a,b",
                     "--n", "3", "--out", str(png)]) == 0
    assert "3 per class, one row each: b, a, b" in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.size == (3 * 33 + 1, 3 * 33 + 1)  # a row per listed class
    assert cli_main(["sample", "--generator", str(gen_path), "--sampler", str(out), "--classes", "horse",
                     "--out", str(tmp_path / "h.png")]) == 2
    assert "unknown class 'horse'; this sampler knows a, b" in capsys.readouterr().err
    plain = tmp_path / "plain.pt"
    CodeSampler([4, 4, 4], latent_dim=8, width=8, encoder_layer="features.relu4_2").save(plain)
    assert cli_main(["sample", "--generator", str(gen_path), "--sampler", str(plain), "--classes", "a",
                     "--out", str(tmp_path / "p.png")]) == 2
    assert "needs a class-conditional sampler" in capsys.readouterr().err
    assert not (tmp_path / "h.png").exists() and not (tmp_path / "p.png").exists()
