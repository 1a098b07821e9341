"""`python -m bench report --update`: one section of RESULTS.md rewritten, the rest kept."""

from __future__ import annotations

from bench.results import _replace_section

DOC = "# R\n\n## Start time (exec to the first 200)\n\nold\n\n## Crash\n\nkept\n\n## Plots\n\nx\n"


def test_the_section_is_replaced_up_to_the_next_heading():
    new = _replace_section(DOC, ["## Start time (exec to the first 200)", "", "new", ""])
    assert new == "# R\n\n## Start time (exec to the first 200)\n\nnew\n\n## Crash\n\nkept\n\n" \
                  "## Plots\n\nx\n"


def test_a_missing_section_goes_before_the_plots():
    new = _replace_section("# R\n\n## Plots\n\nx\n", ["## Start", "", "new", ""])
    assert new == "# R\n\n## Start\n\nnew\n\n## Plots\n\nx\n"
