"""The learned image prior of DGN-AM.

- :mod:`~dgnam.prior.generator`: the upconvolutional generator G (code -> image).
- :mod:`~dgnam.prior.sampler`: a code sampler (z -> a code G turns into a natural image).
- :mod:`~dgnam.prior.stats`: an encoder's code statistics over real images (the code bounds).
- :mod:`~dgnam.prior.importers`: published generators converted to dgnam's format.
"""
