"""The ``dgnam`` command line.

- :mod:`~dgnam.cli.entry`: the ``dgnam`` console script, light to import (a Ctrl-C while torch imports is one line).
- :mod:`~dgnam.cli.main`: the parser and ``main``, which the console script runs.
- :mod:`~dgnam.cli.common`: what the commands share (defaults, arguments, loading, outputs).
- one module per command: :mod:`~dgnam.cli.synthesize` (``synthesize`` and ``synthesize-sharded``),
  :mod:`~dgnam.cli.layers`, :mod:`~dgnam.cli.stats`, :mod:`~dgnam.cli.sample`,
  :mod:`~dgnam.cli.evaluate`, :mod:`~dgnam.cli.import_generator`, :mod:`~dgnam.cli.invert`,
  :mod:`~dgnam.cli.compare`, :mod:`~dgnam.cli.attribute`.
"""
