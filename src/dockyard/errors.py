"""The one error hierarchy. Each layer maps these to its own surface in one place:
HTTP statuses (engine), gRPC codes (containerd), exit codes (CLIs)."""


class DockyardError(Exception):
    """Base of every error we raise on purpose; its message is one line for the user."""


class NotFound(DockyardError):
    pass


class Conflict(DockyardError):
    """The object exists already, or is in a state that forbids the operation."""


class Forbidden(Conflict):
    """The operation is never allowed on this object (a predefined network, say): dockerd's 403.
    Elsewhere (gRPC, exit codes) it is a Conflict."""


class InvalidArgument(DockyardError):
    pass


class Unsupported(DockyardError):
    """Valid request for a feature this build or machine cannot provide."""


class Unauthenticated(DockyardError):
    """A peer (a registry, say) refused our credentials or wants some we do not have."""


class SystemFailure(DockyardError):
    """The kernel or a helper process refused; carries the underlying reason."""


class Unavailable(SystemFailure):
    """A peer (a daemon, a registry) could not be reached or kept failing (connection refused
    or reset, 5xx after retries): trying again later may work."""


class NoSpace(SystemFailure):
    """The disk (or a quota) is full: the operation may succeed once space is freed."""
