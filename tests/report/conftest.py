from __future__ import annotations

import pytest

from cosearch.testing.runs import make_run


@pytest.fixture
def report_run(tmp_path):
    make_run(tmp_path / "run")
    return tmp_path / "run"
