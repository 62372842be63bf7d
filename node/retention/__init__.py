"""What the node keeps and lets go of: deleting studies (the index at once, the files in the
background), and protecting studies from recycling."""

from node.retention.deletion import StudyDeletions, delete_now
from node.retention.protection import protect, unprotect

__all__ = ["StudyDeletions", "delete_now", "protect", "unprotect"]
