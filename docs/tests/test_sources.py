"""Tests of the linkable source listings and the `source` role (docs/_ext/pagedkv_sources.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))

from pagedkv_sources import find_line, line_id, parse_target, render_listing  # noqa: E402

LINES = ["// header", "int a = 1;", "", "int b = 2;  // S2: vectors", "int c = 3;  // S2 again"]


def test_targets_name_a_line_by_number_or_by_text():
    assert parse_target("kernels/x/optimized.cu:42") == ("kernels/x/optimized.cu", "42")
    assert parse_target("kernels/x/optimized.cu#S2: vectors") == ("kernels/x/optimized.cu",
                                                                  "S2: vectors")
    for bad in ("kernels/x/optimized.cu", "kernels/x/optimized.cu:", "#text", ":4"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_text_names_its_first_line_and_numbers_stay_inside_the_file():
    assert find_line(LINES, "S2") == 4
    assert find_line(LINES, "5") == 5
    with pytest.raises(ValueError, match="outside the file"):
        find_line(LINES, "6")
    with pytest.raises(ValueError, match="no line contains"):
        find_line(LINES, "S9")


def test_every_line_of_a_listing_has_its_id_and_a_link_to_it():
    html = render_listing("kernels/x/optimized.cu", LINES)
    for n in range(1, len(LINES) + 1):
        assert f'id="{line_id(n)}"' in html
        assert f'href="#{line_id(n)}"' in html
    assert f'id="{line_id(len(LINES) + 1)}"' not in html
    assert "S2: vectors" in html
