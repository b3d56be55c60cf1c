"""The error a user can fix, and how programs report it."""

import sys


class UserError(Exception):
    """Bad input a user can fix (a flag, a file). Its message is one line that says how."""


def exit_on_user_error(main):
    """Wraps an absl `main` so a `UserError` ends the program with one line, no traceback."""

    def wrapped(argv):
        try:
            return main(argv)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped
