"""The one error type a user sees: raised anywhere, shown by the command-line shell as one line."""


class UserError(Exception):
    """A problem the user can fix (bad input, bad params, missing credentials): shown as one line.
    `key`: the params.yaml key it names, where it names one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key
