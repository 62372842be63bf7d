"""The one ingest path: reading an instance's record from its header, checking the file is whole,
placing it durably beside its index row, imports' journal."""
