"""The node's error types: callers act on the type, the edges map it to HTTP or DICOM statuses."""

import errno


class NodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(NodeError):
    """The configuration file is missing, malformed, or names an unknown key."""


class InvalidInput(NodeError):
    """Input from outside (a dataset, a request, a file) is not acceptable; the message says why."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(NodeError):
    """What was asked for is not in the index or the storage."""


class Conflict(NodeError):
    """The request conflicts with what is already stored."""


class RemoteNodeError(NodeError):
    """A source node is down, refused the association, or answered with a failure."""

    def __init__(self, ae_title: str, message: str) -> None:
        super().__init__(f"{ae_title}: {message}")
        self.ae_title = ae_title


class StorageFull(NodeError, OSError):
    """Storing would pass the storage quota ([storage] max_bytes, max_studies) and nothing may
    be recycled, or the policy is "reject". An OSError too, as a full disk is: the doors answer
    it as a storage failure (C-STORE 0xA700), an import marks the study "storage full"."""

    def __init__(self, message: str = "storage full") -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC
