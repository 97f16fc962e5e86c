"""dgnam.markdown: report tables, and names from files and checkpoints made inert in them."""

from dgnam.markdown import markdown_table, markdown_text


def test_names_are_inert_in_reports():
    hostile = '<script>alert(1)</script>|\x1b[2J\nx & y'
    assert markdown_text(hostile) == "&lt;script&gt;alert(1)&lt;/script&gt;\\|\\x1b[2J\\nx &amp; y"
    table = markdown_table(["class", "value"], [[hostile, "**passes**"], ["`features.relu4_2`", 1.5]])
    lines = table.splitlines()
    assert len(lines) == 4 and all(line.count(" | ") == 1 for line in lines[2:])  # no column or row added
    assert "<script>" not in table and "**passes**" in table and "`features.relu4_2`" in table
