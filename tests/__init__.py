"""advsec test suite (a package so tests can share helpers: ``from tests.conftest import REPO``)."""
