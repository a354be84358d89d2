"""Adapters that serve another library's attacks through advsec's registries (``torchattacks:NAME``)."""
