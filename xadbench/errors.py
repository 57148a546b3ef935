"""Domain errors. The CLI turns every `XadError` into one line and exit code 1."""


class XadError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name)."""


class DataError(XadError):
    """A data set on disk is missing, malformed or inconsistent; the message names the file."""


class PluginError(XadError):
    """A plugin is unknown, broken, or registered twice."""


class MissingExtraError(PluginError):
    """A plugin needs an optional dependency that is not installed; the message names the extra."""


class NotFittedError(XadError):
    """`predict` was called before `fit`."""
