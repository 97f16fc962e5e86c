"""The ``dgnam`` command line.

- :mod:`~dgnam.cli.entry`: the ``dgnam`` console script, light to import (a Ctrl-C or SIGTERM while torch imports
  is one line).
- :mod:`~dgnam.cli.main`: the parser and ``main``, which the console script runs.
- :mod:`~dgnam.cli.common`: what the commands share (defaults, arguments, loading, outputs), read as
  ``common.<name>``.
- :mod:`~dgnam.cli.validate`: the argument checks, each a one-line error before any work.
- :mod:`~dgnam.cli.prepare`: what every synthesising command loads and checks once its arguments pass.
- one module per command, in ``dgnam --help`` order: :mod:`~dgnam.cli.synthesize` (``synthesize`` and
  ``synthesize-sharded``), :mod:`~dgnam.cli.probe`, :mod:`~dgnam.cli.accentuate`, :mod:`~dgnam.cli.layers`,
  :mod:`~dgnam.cli.stats`, :mod:`~dgnam.cli.sample`, :mod:`~dgnam.cli.evaluate`,
  :mod:`~dgnam.cli.import_generator` (``import-generator``), :mod:`~dgnam.cli.invert`, :mod:`~dgnam.cli.compare`,
  :mod:`~dgnam.cli.attribute`, :mod:`~dgnam.cli.sanity`, :mod:`~dgnam.cli.unnatural`.
"""
