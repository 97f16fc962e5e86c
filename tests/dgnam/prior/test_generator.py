import pytest
import torch

from dgnam import DgnamError, UpconvGenerator, cifar_arch, fc6_arch, load_generator

from helpers import tiny_generator


def test_fc6_generator_matches_paper():
    gen = UpconvGenerator(fc6_arch(), output_space="caffe_bgr")
    assert gen.image_size == 256
    n_params = sum(p.numel() for p in gen.parameters())
    assert abs(n_params - 56.1e6) < 0.1e6
    assert list(gen.convs) == ["deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1",
                               "deconv2", "deconv1", "deconv0"]
    assert all(layer.bias is None for layer in gen.convs.values())
    assert gen.convs["conv5_1"].stride == (1, 1) and gen.convs["deconv5"].kernel_size == (4, 4)


def test_cifar_generator_shapes_and_linear_output():
    gen = UpconvGenerator(cifar_arch())
    out = gen(torch.rand(2, 512))
    assert out.shape == (2, 3, 32, 32)
    assert gen.image_size == 32


def test_nearest_upsampling_has_no_checkerboard(tmp_path):
    from dgnam.prior.generator import ResizeConv2d

    arch = cifar_arch(code_dim=64, start_channels=4, widths=(8, 8, 8), spatial_code=True, upsample="nearest")
    gen = UpconvGenerator(arch)
    assert gen.image_size == 32 and gen(torch.rand(2, 64)).shape == (2, 3, 32, 32)
    assert all(isinstance(gen.convs[name], ResizeConv2d) for name in ("deconv3", "deconv2", "deconv1"))
    # The defining property: a constant feature map stays constant away from the border after a
    # resize-conv, while a random 4x4 stride-2 transposed conv makes a period-2 pattern of it.
    flat = torch.ones(1, 8, 6, 6)
    resized = gen.convs["deconv1"](flat)[..., 2:-2, 2:-2]
    assert resized.std(dim=(2, 3)).max() < 1e-5
    transposed = torch.nn.ConvTranspose2d(8, 8, 4, 2, 1)(flat)[..., 2:-2, 2:-2]
    assert transposed.std(dim=(2, 3)).max() > 1e-2
    # The architecture travels in the checkpoint: it loads back as a resize-conv generator.
    loaded = load_generator(gen.save(tmp_path / "g.pt", {}))
    code = torch.rand(2, 64)
    torch.testing.assert_close(loaded(code), gen(code))
    with pytest.raises(DgnamError, match="upsample must be one of"):
        UpconvGenerator({**arch, "upsample": "bilinear"})


def test_output_spaces_round_trip():
    for space in ("rgb01", "rgb11", "caffe_bgr"):
        gen = UpconvGenerator(cifar_arch(code_dim=8, fc_dims=(16,), start_channels=4, widths=(4, 4, 4)),
                              output_space=space)
        rgb = torch.rand(2, 3, 8, 8)
        torch.testing.assert_close(gen.to_rgb(gen.from_rgb(rgb)), rgb)
    caffe = UpconvGenerator(fc6_arch(), output_space="caffe_bgr")
    raw = torch.zeros(1, 3, 2, 2)  # mean-subtracted BGR zeros = the ImageNet mean colour
    torch.testing.assert_close(caffe.to_rgb(raw)[0, :, 0, 0], torch.tensor([123.0, 117.0, 104.0]) / 255)


def test_save_load_round_trip(tmp_path):
    gen = tiny_generator()
    path = gen.save(tmp_path / "g.pt", {"note": "x"})
    loaded = load_generator(path)
    code = torch.rand(3, 16)
    torch.testing.assert_close(loaded(code), gen(code))
    torch.testing.assert_close(loaded.code_upper_bound, gen.code_upper_bound)
    assert loaded.metadata["note"] == "x"


def test_float16_weights_halve_the_file_and_load_back_as_float32(tmp_path):
    gen = tiny_generator()
    with torch.no_grad():
        gen.code_upper_bound.copy_(torch.linspace(0.1234567, 9.87654321, gen.code_dim))
    full = gen.save(tmp_path / "full.pt")
    half = gen.save(tmp_path / "half.pt", weights_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_generator(half)
    assert loaded.convs["conv0"].weight.dtype == torch.float32
    assert torch.equal(loaded.code_upper_bound, gen.code_upper_bound)  # the box is stored exactly
    code = torch.rand(3, 16)
    torch.testing.assert_close(loaded(code), gen(code), atol=2e-2, rtol=2e-2)
    # Saving a file loaded from float16 keeps float16 (``dgnam stats`` rewrites it without doubling it).
    again = loaded.save(tmp_path / "again.pt")
    assert torch.load(again, weights_only=True)["state_dict"]["convs.conv0.weight"].dtype == torch.float16


def test_shipped_generators_by_short_name(tmp_path, monkeypatch):
    from dgnam.io import shipped
    from dgnam.prior.generator import SHIPPED_GENERATORS, generator_file

    assert generator_file("conv") == shipped("cifar10/generator.pt")
    assert generator_file("fc6") == shipped("cifar10/generator_fc6.pt")
    assert load_generator("conv").encoder_layer == "features.relu4_2"
    fc6 = load_generator("fc6")  # the paper's prior: the fc6 code, trained 15,000 iterations, stored half-size
    assert fc6.encoder_layer == "relu6" and fc6.code_dim == 1024 and fc6.metadata["iterations"] >= 15000
    assert fc6.stored_weights_dtype == torch.float16 and fc6.convs["conv0"].weight.dtype == torch.float32
    assert torch.isfinite(fc6.code_upper_bound).all() and fc6.metadata["bound_k"] == 2.0
    # A path is a path, and a local file of a short name's name is reached as ./fc6.
    monkeypatch.chdir(tmp_path)
    tiny_generator().save(tmp_path / "fc6")
    assert generator_file("./fc6").resolve() == (tmp_path / "fc6").resolve()
    assert load_generator("./fc6").code_dim == 16
    assert set(SHIPPED_GENERATORS) == {"conv", "fc6"}


def test_bounds_from_statistics():
    gen = tiny_generator()
    gen.set_code_statistics(torch.ones(16), torch.full((16,), 2.0), k=3)
    torch.testing.assert_close(gen.code_upper_bound, torch.full((16,), 7.0))


def test_corrupt_and_mismatched_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DgnamError, match="corrupt or not a PyTorch checkpoint"):
        load_generator(bad)
    with pytest.raises(DgnamError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(DgnamError, match="not a dgnam generator"):
        load_generator(other)
    ckpt = tiny_generator().checkpoint()
    ckpt["state_dict"]["fc.defc6.weight"] = torch.zeros(5, 5)
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(DgnamError, match="do not match its architecture"):
        load_generator(tmp_path / "mismatch.pt")
    truncated = tmp_path / "trunc.pt"
    tiny_generator().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DgnamError, match="corrupt"):
        load_generator(truncated)


def _conv(i, width):
    return lambda ckpt: ckpt["arch"]["convs"][i].__setitem__(2, width)


# (a change to a valid checkpoint, a phrase of the one-line error): fields of the wrong type and widths that
# torch refused with a traceback (negative) or that filled the memory (absurd), all before any layer is built.
BAD_CHECKPOINTS = [
    (lambda ckpt: ckpt["metadata"].update(code_prior="lots"), "metadata code_prior 'lots', not a number"),
    (lambda ckpt: ckpt["metadata"].update(bound_k=[3]), "metadata bound_k [3], not a number"),
    (lambda ckpt: ckpt.update(encoder=5), "records encoder 5, not a path"),
    (lambda ckpt: ckpt.update(metadata="x"), "records metadata 'x', not a dict"),
    (lambda ckpt: ckpt["arch"].update(code_dim=-16), "code_dim must be a whole number >= 1, got -16"),
    (lambda ckpt: ckpt["arch"]["fc"][0].__setitem__(1, -5), "width must be a whole number >= 1, got -5"),
    (_conv(0, 10 ** 9), "lower its widths"),
    (_conv(0, -3), "output channels must be a whole number >= 1, got -3"),
    (lambda ckpt: ckpt["arch"].update(start_shape=[8, 4]), "start_shape must be (channels, height, width)"),
]


@pytest.mark.parametrize("change, phrase", BAD_CHECKPOINTS, ids=[p for _, p in BAD_CHECKPOINTS])
def test_bad_checkpoint_fields_are_one_line_errors_before_building(change, phrase, tmp_path):
    ckpt = tiny_generator().checkpoint({"code_prior": 0.1})
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(DgnamError, match="re-export it") as info:
        load_generator(tmp_path / "bad.pt")
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_wrong_code_shape():
    with pytest.raises(DgnamError, match=r"expects codes of shape \(B, 16\)"):
        tiny_generator()(torch.rand(2, 20))


def test_non_finite_code_bounds_are_refused_when_set_and_when_loaded(tmp_path):
    gen = tiny_generator()
    with pytest.raises(DgnamError, match="k must be a finite number"):
        gen.set_code_statistics(gen.code_mean, gen.code_std, k=float("inf"))
    gen.save(tmp_path / "g.pt", {"bound_k": float("inf")})  # as `dgnam stats --k inf` once wrote it
    with pytest.raises(DgnamError, match=r"k = inf; rewrite it with `dgnam stats .* --k 3"):
        load_generator(tmp_path / "g.pt")
    assert load_generator(tmp_path / "g.pt", rebounding=True).metadata["bound_k"] == float("inf")
