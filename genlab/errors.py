"""The error a user can fix, and how programs report it."""

import errno
import sys

# Errors of the machine, not the program: reported in one line like a UserError.
_USER_FIXABLE_OS_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "no permission",
    errno.EROFS: "the file system is read-only",
}


class UserError(Exception):
    """Bad input a user can fix (a flag, a file). Its message is one line that says how."""


def exit_on_user_error(main):
    """Wraps an absl `main` so a `UserError`, a full disk or a permission error ends the
    program with one line, no traceback."""

    def wrapped(argv):
        try:
            return main(argv)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except OSError as error:
            if error.errno not in _USER_FIXABLE_OS_ERRORS:
                raise
            where = f" writing {error.filename}" if error.filename else ""
            print(
                f"error: {_USER_FIXABLE_OS_ERRORS[error.errno]}{where}; free space or fix permissions, "
                "then run the same command again",
                file=sys.stderr,
            )
            sys.exit(2)

    return wrapped
