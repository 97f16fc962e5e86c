"""Synthesis at scale (``dgnam synthesize-sharded``).

- :mod:`~dgnam.scale.accel`: CUDA speed settings (channels_last, ``torch.compile``).
- :mod:`~dgnam.scale.distributed`: torchrun's process group, sharding, failing together.
"""
