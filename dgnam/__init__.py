"""dgnam: synthesise the preferred inputs of neurons in any PyTorch model through a learned generator
prior (DGN-AM, Nguyen et al. 2016), with pixel and Fourier baselines through the same loop."""

from dgnam.engine.objectives import channel, class_logit, code_prior, match, total_variation, unit
from dgnam.engine.optim import Adam, NormalizedAscent
from dgnam.engine.param import Fourier, GeneratorCode, Pixels
from dgnam.engine.preferred import visualize
from dgnam.engine.render import Result, synthesize
from dgnam.engine.transforms import GaussianBlur, Jitter
from dgnam.errors import DgnamError
from dgnam.examples.probe import Probe, probe
from dgnam.nets.classifiers import load_classifier
from dgnam.nets.layout import Layout
from dgnam.nets.model import OUTPUT, LayerCapture, Model, describe_layers
from dgnam.nets.zoo import load_model
from dgnam.prior.generator import UpconvGenerator, cifar_arch, fc6_arch, load_generator
from dgnam.prior.sampler import CodeSampler, load_code_sampler

__version__ = "0.1.0"

__all__ = [
    "OUTPUT", "Adam", "CodeSampler", "DgnamError", "Fourier", "GaussianBlur", "GeneratorCode", "Jitter", "LayerCapture",
    "Layout", "Model", "NormalizedAscent", "Pixels", "Probe", "Result", "UpconvGenerator", "channel", "cifar_arch",
    "class_logit", "code_prior", "describe_layers", "fc6_arch", "load_classifier", "load_code_sampler", "load_generator",
    "load_model", "match",
    "probe", "synthesize", "total_variation", "unit", "visualize",
]
