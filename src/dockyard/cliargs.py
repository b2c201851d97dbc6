"""What our command-line programs share: finding the verb before anything is imported. Every
call of a CLI is a fresh interpreter, so only the verb in use should load its code."""


def command_name(argv: list[str], commands, valued_globals: set[str],
                 aliases: dict[str, str] | None = None) -> str | None:
    """The verb in argv (after aliases), or None when there is none or it is unknown.
    `valued_globals` are the global options that take a separate value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in valued_globals:
            skip = True
        elif not arg.startswith("-"):
            name = (aliases or {}).get(arg, arg)
            return name if name in commands else None
    return None
