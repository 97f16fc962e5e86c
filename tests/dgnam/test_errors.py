"""dgnam.errors: the one exception type users see."""

import pytest

from dgnam.cli.main import main
from dgnam.errors import DgnamError, first_line


def test_dgnam_error_is_a_value_error_that_the_cli_prints_as_one_line(tmp_path, capsys):
    # A ValueError, so code that guards a call with `except ValueError` keeps working.
    with pytest.raises(ValueError, match="^unit 99 is out of range; use 0-9$"):
        raise DgnamError("unit 99 is out of range; use 0-9")
    # What the CLI makes of one: its message on one line, exit code 2.
    assert main(["layers", "--model", str(tmp_path / "none.py") + ":make"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dgnam: error: model file '") and err.count("\n") == 1


def test_first_line_cuts_at_a_word_boundary():
    """torch's "Weights only load failed ..." was cut mid-word inside dgnam's message."""
    exc = RuntimeError("Weights only load failed. This file can still be loaded, to do so you have two options\nmore")
    assert first_line(exc, 40) == "Weights only load failed. This file..."
    assert first_line(RuntimeError("short\nsecond"), 40) == "short"
    assert first_line(RuntimeError(""), 40) == "RuntimeError"
