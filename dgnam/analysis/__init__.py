"""Analyses around DGN-AM, all built on the engine's objectives, parametrisations and loop.

- :func:`invert`: what a layer keeps of an image (representation inversion).
- :func:`compare`: how two classifiers differ (combined / difference class images, output-space
  similarity, mimicry).
- :func:`attribute`: which pixels drove a decision (captum saliency, Grad-CAM, guided backprop,
  guided Grad-CAM).
"""

from dgnam.analysis.attribute import AttributionResult, attribute, gradcam_layer
from dgnam.analysis.compare import ComparisonResult, compare
from dgnam.analysis.invert import InversionResult, invert

__all__ = ["AttributionResult", "ComparisonResult", "InversionResult", "attribute", "compare", "gradcam_layer",
           "invert"]
