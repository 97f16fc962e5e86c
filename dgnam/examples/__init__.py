"""Dataset examples: the real images that drive each unit of a layer hardest (one streaming pass), and the
probe that shows them beside DGN-AM's synthesised images."""

from dgnam.examples.probe import Probe, probe
from dgnam.examples.topk import DatasetExamples, dataset_examples

# The folder listing the dataset pass uses; it lives with the other image reading.
from dgnam.images import list_images

__all__ = ["DatasetExamples", "Probe", "dataset_examples", "list_images", "probe"]
