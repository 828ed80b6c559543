class CliError(Exception):
    """An error the user can act on; `headcast` prints it without a traceback and exits 2."""
