"""Cell ids are content hashes: the results store, the committed reference and every submission
are keyed by them.  A refactoring must leave every suite's ids as they were; a change of ids is
made on purpose, by regenerating tests/fixtures/cell_ids.json in the same commit and saying so."""

import json
from pathlib import Path

import pytest

from prt_bench.suite.plan import expand
from prt_bench.suite.schema import load_suite

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "cell_ids.json").read_text())


@pytest.mark.parametrize("suite", sorted(EXPECTED))
def test_cell_ids_unchanged(suite):
    got = {c.cell_id: c.label for c in expand(load_suite(suite))}
    assert got == EXPECTED[suite]
