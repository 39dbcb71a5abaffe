"""Domain errors: each carries a sentence a staff member can act on."""


class DomainError(Exception):
    """A business rule refused the operation; ``str(error)`` is shown to staff as is."""


class NotFound(DomainError):
    """The thing asked for does not exist."""


class PermissionDenied(DomainError):
    """The acting staff member may not do this."""


class InvalidInput(DomainError):
    """A value given by staff is malformed or out of range."""


class Conflict(DomainError):
    """The operation clashes with the current state (already done, already linked...)."""
