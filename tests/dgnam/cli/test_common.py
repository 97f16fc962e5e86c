"""dgnam.cli.common: what the commands share (argument parsing, output folders, the code prior's encoder)."""

import pytest

from dgnam.cli.common import parse_units


def test_parse_units():
    assert parse_units("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(Exception, match="not a list"):
        parse_units("3-1")
