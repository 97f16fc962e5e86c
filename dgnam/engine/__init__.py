"""The activation-maximisation engine: one loop for DGN-AM and every baseline.

- :mod:`~dgnam.engine.objectives`: *what* to maximise (units, channels, class logits, matches, the
  code prior), composable with ``+ - *``.
- :mod:`~dgnam.engine.param`: *how the image is represented* (a generator's code, pixels, Fourier),
  with the registry ``dgn | pixel | fourier``.
- :mod:`~dgnam.engine.transforms`: what is done to the image every step (jitter, blur).
- :mod:`~dgnam.engine.optim`: the update rules.
- :mod:`~dgnam.engine.render`: the loop, :func:`~dgnam.engine.render.synthesize`.
- :mod:`~dgnam.engine.preferred`: the one-call API, :func:`~dgnam.engine.preferred.visualize`.
"""
