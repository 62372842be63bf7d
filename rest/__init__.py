"""The HTTP facade: the viewer's integration API and pages, over the node's index and storage."""
