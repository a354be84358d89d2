"""Errors a user can act on. The CLI prints them as one line and exits 2 (usage) or 1 (run failure)."""


class AdvsecError(Exception):
    """Base class for every error advsec reports to a user without a traceback."""

    exit_code = 1


class UsageError(AdvsecError):
    """The user asked for something impossible: a bad spec, an unknown name, a wrong flag."""

    exit_code = 2


class SpecError(UsageError):
    """A spec (TOML) or a parameter set is malformed; the message names the key path."""


class PluginError(UsageError):
    """A plugin is unknown, ambiguous (two sources), or broken (fails to import)."""


class DataError(AdvsecError):
    """A dataset is missing, truncated or corrupt; the message names the file and what was expected."""


class ParameterError(UsageError):
    """A parameter's value is out of range. It names its key, so a spec error can give the full key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class InputError(UsageError):
    """Inputs handed to a model or attack are malformed: wrong shape, NaN, outside the bounds."""


class BudgetError(AdvsecError):
    """An attack returned a point outside its threat model: a bug in that attack, never silently fixed."""


class CostError(UsageError):
    """A run would cost more sample passes than the user allowed (``--max-cost``)."""
