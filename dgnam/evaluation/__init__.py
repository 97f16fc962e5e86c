"""How good the synthesised images are, judged by networks that made none of them.

- :mod:`~dgnam.evaluation.evaluate`: DGN-AM against the pixel baselines (``dgnam evaluate``).
- :mod:`~dgnam.evaluation.metrics`: agreement, KID, diversity, robustness, with intervals.
- :mod:`~dgnam.evaluation.report`: what an evaluation holds and its markdown report.
"""
