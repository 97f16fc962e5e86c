import pytest
import torch
import torchvision

from dgnam import DgnamError, LayerCapture, Model, describe_layers
from dgnam.nets.model import last_spatial_layer, parse_layer

from helpers import ecosystem_model


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # non-trivial BN statistics so pre-activations are not centred at 0
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _n_hooks(net):
    return sum(len(m._forward_hooks) for m in net.modules())


def test_bn2_pre_activation_is_captured_before_inplace_add_and_relu(resnet):
    x = torch.rand(2, 3, 64, 64)
    with LayerCapture(resnet, ["layer1.0.bn2", "layer1.0", "layer1.0.relu@0", "layer1.0.relu@1"]) as cap:
        resnet(x)
    bn2 = cap.activations["layer1.0.bn2"]
    assert (bn2 < 0).any(), "pre-activation must keep negative values"
    # Manual recomputation of the block, without any in-place op.
    with torch.no_grad():
        stem = resnet.maxpool(torch.relu(resnet.bn1(resnet.conv1(x))))
        block = resnet.layer1[0]
        mid = torch.relu(block.bn1(block.conv1(stem)))
        expected_bn2 = block.bn2(block.conv2(mid))
        expected_out = torch.relu(expected_bn2 + stem)
    torch.testing.assert_close(bn2, expected_bn2)
    torch.testing.assert_close(cap.activations["layer1.0.relu@0"], mid)
    torch.testing.assert_close(cap.activations["layer1.0.relu@1"], expected_out)
    torch.testing.assert_close(cap.activations["layer1.0"], expected_out)
    assert cap.calls["layer1.0.relu"] == 2  # one module, two calls per forward
    assert _n_hooks(resnet) == 0


def test_hooks_removed_even_when_forward_fails(resnet):
    with pytest.raises(RuntimeError):
        with LayerCapture(resnet, ["layer2.0.bn2"]):
            resnet(torch.rand(1, 5, 32, 32))  # wrong channel count
    assert _n_hooks(resnet) == 0


def test_gradient_flows_through_captured_pre_activation(resnet):
    model = Model(resnet)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    act = model.run(x, ["layer2.1.bn2"])["layer2.1.bn2"]
    (grad,) = torch.autograd.grad(act[0, 3].sum(), x)
    assert grad.abs().sum() > 0
    assert _n_hooks(resnet) == 0


def test_run_stops_early_and_output(resnet):
    model = Model(resnet, input_size=64)
    acts = model.run(torch.rand(2, 3, 32, 32), ["layer1.0.bn2", "output"])
    assert acts["output"].shape == (2, 10)
    assert acts["layer1.0.bn2"].shape == (2, 64, 16, 16)  # resized 32 -> 64 first


def test_unknown_layer_lists_closest_names(resnet):
    with pytest.raises(DgnamError, match=r"did you mean 'layer4.1.bn2'") as err:
        LayerCapture(resnet, ["layer4.1.bn_2"])
    assert "\n" not in str(err.value)


def test_call_index_out_of_range(resnet):
    with pytest.raises(DgnamError, match="ran 2 times"):
        Model(resnet).run(torch.rand(1, 3, 32, 32), ["layer1.0.relu@2"])


def test_parse_layer():
    assert parse_layer("layer1.0.relu@2") == ("layer1.0.relu", 2)
    assert parse_layer("fc") == ("fc", 0)


def test_describe_layers(resnet):
    infos = {i.name: i for i in describe_layers(Model(resnet, input_size=64))}
    assert infos["layer4"].shape == (512, 2, 2)
    assert infos["layer1.0.relu"].calls == 2
    assert infos["fc"].n_params == 512 * 10 + 10
    assert _n_hooks(resnet) == 0


def test_preprocess_crop_and_normalise():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.flatten(1)

    model = Model(Probe(), input_size=227, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], fit="crop")
    img = torch.rand(1, 3, 256, 256)
    model(img)
    torch.testing.assert_close(seen["x"], (img[..., 14:241, 14:241] - 0.5) / 0.25)
    with pytest.raises(DgnamError, match="both mean and std"):
        Model(Probe(), mean=[0.5, 0.5, 0.5])


def test_wrong_input_size_is_one_line():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 2))
    with pytest.raises(DgnamError, match=r"failed on input of shape \(1, 3, 64, 64\).*--input-size") as err:
        Model(net, input_size=64).run(torch.rand(1, 3, 64, 64), ["output"])
    assert "\n" not in str(err.value)
    assert Model(net, input_size=32).run(torch.rand(1, 3, 64, 64), ["output"])["output"].shape == (1, 2)


def test_a_model_for_other_than_rgb_input_is_told_to_take_rgb_not_to_change_the_input_size():
    grey = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    with pytest.raises(DgnamError, match="takes 1-channel input .* 3-channel RGB") as err:
        Model(grey, input_size=8).run(torch.rand(1, 3, 8, 8), ["output"])
    assert "--input-size" not in str(err.value)


def test_wrapping_leaves_the_module_in_its_mode_and_describing_it_leaves_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    before = net[1].running_mean.clone(), int(net[1].num_batches_tracked)
    describe_layers(Model(net, input_size=8))
    assert net.training and net[1].training
    assert torch.equal(net[1].running_mean, before[0]) and int(net[1].num_batches_tracked) == before[1]


def test_eval_mode_restores_each_submodule_flag():
    # A Model wrapper is in training mode while its network is in eval mode; restoring the wrapper
    # must not switch the network's BatchNorm to batch statistics.
    from dgnam.nets.model import eval_mode

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model = Model(net.eval())
    assert model.training and not net.training
    with eval_mode(model):
        assert not model.training
    assert model.training and not net.training and not net[1].training
    assert all(p.requires_grad for p in net.parameters())


# --- the one rule for model modes: every public function runs the user's model through eval_mode ---------
def _bn_dropout_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():  # statistics unlike a batch's, so batch statistics would change every reading
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net


def _as_loaded(net):
    """As dgnam's loaders hand it over: the network in eval mode inside a Model wrapper left in training mode."""
    return Model(net.eval(), input_size=32)


def _as_training(net):
    """A network the user is training, one submodule switched to eval by hand, one parameter frozen."""
    net.train()
    net[3].eval()
    net[0].bias.requires_grad_(False)
    return Model(net, input_size=32)


def _public_calls(tmp_path):
    from dgnam import visualize
    from dgnam.analysis import attribute, compare, invert
    from dgnam.engine.param import Pixels
    from dgnam.evaluation.evaluate import Method, evaluate
    from dgnam.examples import dataset_examples, probe
    from dgnam.sanity import cascading_randomization

    from helpers import TinyNet, colour_folder, tiny_generator

    data = tmp_path / "data"
    data.mkdir()
    colour_folder(data, per_colour=1, greys=1)
    images, labels = torch.rand(20, 3, 32, 32), torch.arange(10).repeat(2)
    judge = Model(TinyNet(seed=1), input_size=32)
    return {
        "probe": lambda m: probe(m, "output", [0, 1], data=data, generator=tiny_generator(), steps=2, k=2),
        "dataset_examples": lambda m: dataset_examples(m, "1", data, k=2),
        "evaluate": lambda m: evaluate(m, {"j": judge}, None, real_test=(images, labels), real_train=images,
                                       classes=list("abcdefghij"), methods=[Method("pixel", "pixel", "pixel")],
                                       restarts=2, steps=2, progress=False),
        "sanity": lambda m: cascading_randomization(
            m, {"pixel": lambda s: visualize(s, [0], param="pixel", restarts=2, steps=2)}, judge, units=[0],
            restarts=2, stages=1),
        "invert": lambda m: invert(m, images[0], ["1"], params=("pixel",), steps=2),
        "compare": lambda m: compare(m, judge, Pixels(32), classes=[0, 1], steps=2, mimic_steps=1),
        "attribute": lambda m: attribute(m, images[:2], target=1, layer="2", methods=("saliency", "gradcam")),
    }


def _state(net):
    return ({name: sub.training for name, sub in net.named_modules()},
            {k: v.clone() for k, v in net.state_dict().items()},
            {name: p.requires_grad for name, p in net.named_parameters()})


@pytest.mark.parametrize("how", [_as_loaded, _as_training])
def test_every_public_function_returns_the_users_model_as_it_came(tmp_path, how):
    """Flags of every submodule, BatchNorm buffers and requires_grad unchanged, no hook left, after each call."""
    for name, call in _public_calls(tmp_path).items():
        net = _bn_dropout_net()
        model = how(net)
        modes, buffers, grads = _state(net)
        call(model)
        after_modes, after_buffers, after_grads = _state(net)
        assert after_modes == modes, name
        assert all(torch.equal(after_buffers[k], v) for k, v in buffers.items()), name
        assert after_grads == grads, name
        assert all(not sub._forward_hooks and not sub._forward_pre_hooks for sub in net.modules()), name
        assert model.training, name  # the wrapper too


class Raises(torch.nn.Module):
    """A model whose own code refuses its input, as timm's and Hugging Face's size checks do."""

    def forward(self, x):
        assert x.shape[-1] == 224, f"Input height ({x.shape[-1]}) doesn't match model (224)."
        return x.mean((2, 3))


def test_an_exception_inside_the_users_model_is_one_line_naming_the_model_and_the_flag():
    with pytest.raises(DgnamError, match=r"Raises failed .*AssertionError: Input height \(64\).*--input-size") as err:
        Model(Raises(), input_size=64)(torch.rand(1, 3, 64, 64))
    assert "\n" not in str(err.value)


def test_last_spatial_layer_reads_only_real_maps(tmp_path):
    # Swin: the channels-last map put channels-first; a ViT: the last token layer whose patches move the logits
    # (the attention's input), never a (heads, tokens, dim) tensor.
    assert last_spatial_layer(ecosystem_model("swin", tmp_path)) == "permute"
    assert last_spatial_layer(ecosystem_model("timm_vit", tmp_path)) == "blocks.1.norm1"
    assert last_spatial_layer(ecosystem_model("hf_vit", tmp_path)) == "vit.layers.1.layernorm_before"
