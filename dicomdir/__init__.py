"""Media export: DICOMDIR, IHE PDI layout and ISO 9660 images."""
