"""The one exception type for input a user can correct."""


class UserError(ValueError):
    """Input that swat cannot use (an argument, a config field, a file or directory a user passed),
    with a message that says what to change.

    Every check a user can trigger raises it; the CLI reports it as ``swat COMMAND: message`` with
    exit code 2, while any other exception is a bug and keeps its traceback. It subclasses
    ``ValueError`` so that code catching ``ValueError`` around swat calls keeps working.
    """
