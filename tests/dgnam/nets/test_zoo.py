"""dgnam.nets.zoo: a Model from a command-line spec (torchvision, a factory file or module, a dgnam
classifier, a TorchScript file, timm and Hugging Face models), with one-line errors for every wrong spec."""

import textwrap

import pytest
import torch

from dgnam.errors import DgnamError
from dgnam.io import atomic_save
from dgnam.nets.classifiers import build_classifier, classifier_checkpoint
from dgnam.nets.model import Model
from dgnam.nets.zoo import load_model

from helpers import ecosystem_model

FACTORIES = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3))

    def not_a_module():
        return 42

    def needs_an_argument(width):
        return nn.Linear(width, 3)
""")


def test_factory_file_is_the_net_it_builds_with_the_preprocessing_asked_for(tmp_path):
    (tmp_path / "nets.py").write_text(FACTORIES)
    spec = f"{tmp_path / 'nets.py'}:make"
    plain = load_model(spec)
    assert isinstance(plain, Model) and plain.name == "make" and plain.input_size is None
    x = torch.rand(2, 3, 8, 8)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x))  # RGB [0, 1] in, untouched
        mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
        normalised = load_model(spec, mean=mean, std=std, input_size=16)
        expected = net((torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True)
                        - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        torch.testing.assert_close(normalised(x), expected)


def test_torchvision_spec_takes_the_weights_preprocessing():
    model = load_model("torchvision:resnet18:none", input_size=64)
    assert model.name == "resnet18" and model.input_size == 64 and model.classes == []
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(DgnamError, match="torchvision has no model 'resnet19'; try one of"):
        load_model("torchvision:resnet19:none")
    with pytest.raises(DgnamError, match="resnet18 has no weights 'BEST'; choose one of IMAGENET1K_V1"):
        load_model("torchvision:resnet18:BEST")
    with pytest.raises(DgnamError, match="give both --mean and --std"):
        load_model("torchvision:resnet18:none", mean=[0.5, 0.5, 0.5])


def test_classifier_and_torchscript_files(tmp_path):
    kwargs = {"widths": [4, 4], "code_dim": 8}
    net = build_classifier("cifar_vgg", kwargs).eval()
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=(0.5, 0.5, 0.5),
                                      std=(0.25, 0.25, 0.25),
                                      input_size=32, metadata={"classes": list("abcdefghij")}), tmp_path / "vgg.pt")
    classifier = load_model(str(tmp_path / "vgg.pt"))
    assert classifier.classes == list("abcdefghij") and classifier.input_size == 32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), net((x - 0.5) / 0.25))
        scripted = tmp_path / "vgg.ts"
        torch.jit.trace(net, x).save(str(scripted))
        from_script = load_model(str(scripted), input_size=32)
        assert from_script.name == "vgg" and from_script.input_size == 32
        torch.testing.assert_close(from_script(x), net(x))


@pytest.mark.parametrize("spec, message", [
    ("DIR/missing.py:make", r"model file '.*missing.py' does not exist"),
    ("DIR/missing.pt", r"model file '.*missing.pt' does not exist"),
    ("DIR/nets.py:absent", "has no attribute 'absent'; name the function that builds the model"),
    ("DIR/nets.py:not_a_module", "returned int, not an nn.Module"),
    ("DIR/nets.py:needs_an_argument", "the factory must take no arguments"),
    ("no_such_package_xyz:make", "cannot import module 'no_such_package_xyz'"),
    ("nets", "needs the form FILE.py:factory or module:factory"),
], ids=["no-file", "no-checkpoint", "no-attribute", "not-a-module", "needs-arguments", "no-module", "no-colon"])
def test_bad_specs_are_one_line(tmp_path, spec, message):
    (tmp_path / "nets.py").write_text(FACTORIES)
    with pytest.raises(DgnamError, match=message) as info:
        load_model(spec.replace("DIR", str(tmp_path)))
    assert "\n" not in str(info.value)


def test_timm_and_hugging_face_models_bring_their_own_preprocessing(tmp_path):
    vit = ecosystem_model("timm_vit", tmp_path)  # a factory's timm model: pretrained_cfg and the size it was built for
    assert vit.preprocessing() == {"input_size": 32, "fit": "resize", "mean": [0.5] * 3, "std": [0.5] * 3,
                                   "preprocessing_source": "timm pretrained_cfg"}
    hf = ecosystem_model("hf_vit", tmp_path)  # no image processor: the config's size, no normalisation
    assert hf.input_size == 32 and hf.preprocessing()["mean"] is None
    from transformers import ViTImageProcessor
    hf.module.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                      image_std=[0.2, 0.3, 0.4]).save_pretrained(tmp_path / "vit")
    folder = load_model(f"hf:{tmp_path / 'vit'}")
    assert folder.preprocessing()["mean"] == [0.4, 0.5, 0.6] and folder.preprocessing()["std"] == [0.2, 0.3, 0.4]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # the saved weights, and the logits unwrapped from the output object
        expected = hf.module((x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
                             / torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)).logits
        torch.testing.assert_close(folder(x), expected)
    timm_model = load_model("timm:vit_tiny_patch16_224:none", mean=[0.1] * 3, std=[0.2] * 3)  # flags win
    assert timm_model.input_size == 224 and timm_model.preprocessing()["mean"] == [0.1] * 3



@pytest.mark.parametrize(("options", "mean", "std"), [
    ({"do_normalize": False}, [0.0] * 3, [1.0] * 3),  # the processor passes the [0, 1] image on as it is
    ({"do_rescale": False}, [0.4 / 255, 0.5 / 255, 0.6 / 255], [0.2 / 255, 0.3 / 255, 0.4 / 255]),  # 0-255 pixels
    ({"rescale_factor": 1 / 127.5}, [0.2, 0.25, 0.3], [0.1, 0.15, 0.2]),
])
def test_hugging_face_models_see_what_their_image_processor_makes(tmp_path, options, mean, std):
    """dgnam's [0, 1] image x as the processor would hand it to the model: (255 x r - m) / s, r its rescale
    factor (1 without do_rescale), m and s its mean and std (0 and 1 without do_normalize)."""
    from transformers import ViTImageProcessor

    hf = ecosystem_model("hf_vit", tmp_path)
    hf.module.save_pretrained(tmp_path / "vit")
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                                  image_std=[0.2, 0.3, 0.4], **options)
    processor.save_pretrained(tmp_path / "vit")
    folder = load_model(f"hf:{tmp_path / 'vit'}")
    x = torch.rand(2, 3, 32, 32)
    pixels = processor(images=list((x * 255).round().to(torch.uint8)), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(folder.preprocess((x * 255).round() / 255), pixels, atol=1e-4, rtol=1e-4)
        expected = hf.module((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).logits
        torch.testing.assert_close(folder(x), expected, atol=1e-4, rtol=1e-4)


def test_hugging_face_input_size_is_the_processors_crop_not_the_configs(tmp_path):
    from transformers import BitImageProcessor

    hf = ecosystem_model("hf_vit", tmp_path)  # config.image_size 32
    folder = tmp_path / "vit"
    hf.module.save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 16, "width": 16}).save_pretrained(folder)
    assert load_model(f"hf:{folder}").input_size == 16  # as dinov2 (config 518, processor crop 224)
    BitImageProcessor(size={"shortest_edge": 24}, do_center_crop=False).save_pretrained(folder)
    assert load_model(f"hf:{folder}").input_size == 24
    assert load_model(f"hf:{folder}", input_size=32).input_size == 32  # --input-size wins
    BitImageProcessor(size={"height": 24, "width": 16}, do_center_crop=False).save_pretrained(folder)
    with pytest.raises(DgnamError, match="makes 24x16 inputs; dgnam reads square images: pass --input-size"):
        load_model(f"hf:{folder}")
    assert load_model(f"hf:{folder}", input_size=16).input_size == 16

def test_random_models_are_built_under_the_seed(tmp_path):
    def weights(model):
        return torch.cat([p.flatten() for p in model.parameters()])

    for name in ("timm_vit", "swin"):
        a, b = ecosystem_model(name, tmp_path), ecosystem_model(name, tmp_path)
        assert torch.equal(weights(a), weights(b))
    a = load_model("timm:vit_tiny_patch16_224:none", seed=1)
    assert torch.equal(weights(a), weights(load_model("timm:vit_tiny_patch16_224:none", seed=1)))
    assert not torch.equal(weights(a), weights(load_model("timm:vit_tiny_patch16_224:none", seed=2)))


@pytest.mark.parametrize("spec, message", [
    ("timm:vit_tiny_patch16_224", "not available offline.*timm:vit_tiny_patch16_224:none"),
    ("timm:no_such_net", "timm has no model 'no_such_net'"),
    ("hf:/no/such/folder", "cannot load the Hugging Face model '/no/such/folder' offline"),
])
def test_ecosystem_weights_never_download(spec, message):
    with pytest.raises(DgnamError, match=message) as err:
        load_model(spec)
    assert "\n" not in str(err.value)
