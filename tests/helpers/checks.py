"""Where the repository and the shared data are, and skips that CI turns into failures."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
# CI sets this: a missing data file or parity peer is then a failure, not a skip.
NO_SKIPS = os.environ.get("GENLAB_NO_SKIPS") == "1"


def skip_or_fail(reason):
    """Skips the test, or under GENLAB_NO_SKIPS=1 (CI) fails it: CI must run everything."""
    if NO_SKIPS:
        pytest.fail(f"{reason} (GENLAB_NO_SKIPS=1: CI runs every test)")
    pytest.skip(reason)


def import_peer(name):
    """A test-only dependency (the parity peers, the notebook's runner): imported, else skipped, or failed in CI."""
    try:
        return __import__(name)
    except ImportError:
        skip_or_fail(f"{name} is not installed: pip install -e '.[test]'")
