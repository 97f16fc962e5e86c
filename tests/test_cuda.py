"""Cross-cutting, so at the top level: the CUDA paths of synthesis, the CLI and training together.

CI has no GPU, so these are skipped there; on a GPU machine run them with ``pytest tests/test_cuda.py``
(the rest of the suite then also trains on the GPU, as the configs' ``accelerator: auto`` picks it)."""

import copy

import pytest
import torch

import dgnam
from dgnam import load_generator
from dgnam.engine.param import Fourier, GeneratorCode, Pixels
from dgnam.engine.transforms import GaussianBlur, Jitter
from train import generator

from helpers import _common, _train_encoder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def exact_cuda():
    """cuDNN convolutions in full float32 (TF32 is PyTorch's default for them), so CPU and GPU can agree."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def test_generator_code_on_cuda_follows_the_cpu_run(tiny_model, tiny_gen, exact_cuda):
    # Few steps: normalised ascent divides by mean|g|, so float differences grow with the steps.
    kwargs = {"generator": tiny_gen, "restarts": 2, "steps": 5}
    on_cpu = dgnam.visualize(copy.deepcopy(tiny_model), [0, 3, 7], **kwargs)
    on_gpu = dgnam.visualize(tiny_model, [0, 3, 7], **{**kwargs, "generator": copy.deepcopy(tiny_gen)},
                             device="cuda")
    assert on_gpu.images.device.type == "cpu" and on_gpu.params.device.type == "cpu"
    torch.testing.assert_close(on_gpu.params, on_cpu.params, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(on_gpu.values, on_cpu.values, atol=1e-3, rtol=1e-3)
    upper = tiny_gen.code_upper_bound
    assert bool((on_gpu.params >= 0).all()) and bool((on_gpu.params <= upper + 1e-6).all())


def test_bf16_autocast_ascends_and_returns_float32(tiny_model, tiny_gen):
    res = dgnam.visualize(tiny_model, [0, 3, 7], generator=tiny_gen, restarts=2, steps=30,
                          device="cuda", amp=True)
    assert res.images.dtype == torch.float32 and res.params.dtype == torch.float32
    assert torch.isfinite(res.values).all()
    assert bool((res.history[-1] > res.history[0]).all()), "bf16 ascent did not raise every row's objective"
    assert res.settings["amp"] is True


@pytest.mark.parametrize("param", [Pixels(32), Fourier(32)], ids=["pixels", "fourier"])
def test_pixel_baselines_with_transforms_on_cuda(tiny_model, param):
    res = dgnam.visualize(tiny_model, [1, 2], param=param, restarts=2, steps=30, device="cuda",
                          transforms=[Jitter(2), GaussianBlur(0.5)])
    assert res.images.shape == (4, 3, 32, 32) and res.images.device.type == "cpu"
    assert bool((res.history[-1] > res.history[0]).all())


def test_sampler_start_is_the_same_code_on_cuda(tiny_gen):
    from dgnam.prior.sampler import CodeSampler

    torch.manual_seed(0)
    sampler = CodeSampler([tiny_gen.code_dim], latent_dim=4, width=8)
    on_cpu = GeneratorCode(tiny_gen, sampler=copy.deepcopy(sampler)).init([3, 4], torch.arange(2), torch.device("cpu"))
    param = GeneratorCode(copy.deepcopy(tiny_gen), sampler=sampler).to(torch.device("cuda"))
    on_gpu = param.init([3, 4], torch.arange(2), torch.device("cuda"))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=1e-5)


def test_generator_training_with_all_terms_resumes_on_cuda(tmp_path, image_root):
    """Class term with low-passed gradient, moving average, spectral excess on the GPU; the resumed
    run restores the average (an AveragedModel in the state dict) on the GPU and keeps averaging."""
    enc_path = _train_encoder(tmp_path, image_root)
    gen_path, ckpt_dir = tmp_path / "gen.pt", tmp_path / "gckpt"
    args = ["fit", "--config", "configs/cifar10/generator.yaml", *_common(tmp_path, image_root, "gen"),
            "--trainer.max_epochs=-1", "--trainer.accelerator=gpu", f"--model.encoder={enc_path}",
            f"--model.export_path={gen_path}",
            "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true, "
            "upsample: nearest}",
            "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
            "--model.lambda_class=0.5", "--model.class_gradient_sigma=1.0", "--model.lambda_spectrum=2.0",
            "--model.lambda_code=0.5", "--model.ema_decay=0.5", "--trainer.limit_val_batches=0",
            f"--trainer.callbacks.init_args.dirpath={ckpt_dir}", "--trainer.callbacks.init_args.every_n_train_steps=1"]
    generator.main([*args, "--trainer.max_steps=2"])
    first = torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    generator.main([*args, "--trainer.max_steps=4", f"--ckpt_path={ckpt_dir / 'last.ckpt'}"])
    last = torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")
    average = last["state_dict"]["generator_ema.module.convs.conv0.weight"]
    assert torch.isfinite(average).all()
    assert not torch.equal(average, first["generator_ema.module.convs.conv0.weight"])  # still averaging after resuming
    assert not torch.equal(average, last["state_dict"]["generator.convs.conv0.weight"])
    saved = torch.load(gen_path, weights_only=True, map_location="cpu")
    assert saved["metadata"]["iterations"] == 4 and saved["metadata"]["weights"] == "moving average, decay 0.5"
    torch.testing.assert_close(saved["state_dict"]["convs.conv0.weight"], average)
    gen = load_generator(gen_path)  # a GPU-trained file loads on the CPU
    assert torch.isfinite(gen(gen.code_upper_bound[None] * 0.5)).all()


@pytest.mark.parametrize("fp32", [False, True], ids=["bf16", "fp32"])
def test_cli_synthesize_autocasts_on_cuda_unless_fp32(tmp_path, fp32):
    import json

    from dgnam.cli.common import DEFAULT_GENERATOR, DEFAULT_MODEL
    from dgnam.cli.main import main as cli_main

    if not (DEFAULT_GENERATOR.is_file() and DEFAULT_MODEL.is_file()):
        pytest.skip("shipped checkpoints absent")
    out = tmp_path / "run"
    args = ["synthesize", "--units", "0-1", "--restarts", "1", "--steps", "5", "--device", "cuda", "--quiet", "--out",
            str(out)]
    assert cli_main(args + (["--fp32"] if fp32 else [])) == 0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["engine"]["amp"] is (not fp32) and settings["device"].startswith("cuda")
