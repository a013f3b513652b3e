"""Errors the use cases raise for members to read, and the one list of what counts as the member's fault."""

from generation import InputError
from storage import DraftNotFound, FlagNotFound, VersionNotFound


class ServiceError(Exception):
    """A request the service refuses, with a message fit to show the member."""


# A member (in Discord or the console) or an operator (on the command line) can fix these; every
# front-end shows them as one line. Anything else is ours: logged, and answered with an apology.
MEMBER_ERRORS: tuple[type[Exception], ...] = (InputError, ServiceError, DraftNotFound, FlagNotFound, VersionNotFound)
