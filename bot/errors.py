"""Errors the use cases raise for members to read."""


class ServiceError(Exception):
    """A request the service refuses, with a message fit to show the member."""
