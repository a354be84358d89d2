"""advsec's version, apart from the package's lazy public API so any module can read it cheaply."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("advsec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
