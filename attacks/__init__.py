"""Built-in attack plugins, installed as ``advsec.attacks`` and registered through entry points."""
