"""Dataset examples: the real images that drive each unit of a layer hardest (one streaming pass), and the
probe that shows them beside DGN-AM's synthesised images."""

from dgnam.examples.topk import DatasetExamples, dataset_examples, list_images

__all__ = ["DatasetExamples", "dataset_examples", "list_images"]
