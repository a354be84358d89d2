"""Errors a user can act on. The CLI prints them as one line and exits with the code README's table gives:
2 for an error the user can fix (every class here but two), 1 for a finding (:class:`NotComparable`) or a
failure no input explains (:class:`BudgetError`, a bug in an attack)."""


class AdvsecError(Exception):
    """Base class for every error advsec reports to a user without a traceback: one they can fix (a spec,
    a flag, a plugin, a model, data, a run's folder or store, an install), saying how."""

    exit_code = 2


class UsageError(AdvsecError):
    """The user asked for something impossible: a bad spec, an unknown name, a wrong flag."""


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
    """An attack returned a point outside its threat model: a bug in that attack, never silently fixed.
    No input of the user's explains it, so it exits 1, as a crash would."""

    exit_code = 1


class CostError(UsageError):
    """A run would cost more sample passes than the user allowed (``--max-cost``)."""


class NotComparable(AdvsecError):
    """``advsec compare`` found that two runs scored different samples or budgets: a finding about the
    runs, as ``diff`` finding two files different is, so it exits 1."""

    exit_code = 1
