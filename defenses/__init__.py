"""Built-in defense plugins, installed as ``advsec.defenses`` and registered through entry points."""
