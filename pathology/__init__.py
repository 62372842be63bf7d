"""Digital pathology: slide readers, slide metadata, tiles, colour profiles, annotation layers."""
