"""Does the image show the network or the prior? Sanity checks for feature visualisation.

- :mod:`~dgnam.sanity.randomize`: cascading parameter randomisation stages (Adebayo et al. 2018).
- :mod:`~dgnam.sanity.cascade`: the same units synthesised at every stage, scored against the
  trained model's restarts (``dgnam sanity``).
- :mod:`~dgnam.sanity.variants`, :mod:`~dgnam.sanity.unnatural`: the DGN-AM paper's natural +
  modified classes test (``dgnam unnatural``).
- :mod:`~dgnam.sanity.similarity`: SSIM, feature cosine similarity, intervals.
"""

from dgnam.sanity.cascade import CascadeResult, cascading_randomization
from dgnam.sanity.randomize import Stage, cascade_stages, randomized
from dgnam.sanity.unnatural import UnnaturalResult, class_pairs, score_unnatural
from dgnam.sanity.variants import VARIANTS, with_variants

__all__ = ["VARIANTS", "CascadeResult", "Stage", "UnnaturalResult", "cascade_stages", "cascading_randomization",
           "class_pairs", "randomized", "score_unnatural", "with_variants"]
