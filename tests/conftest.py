from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the in-process tests; the controller reuses it and leaves it running."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    yield ray
    ray.shutdown()
