"""The index: the database schema, its engine, the group-committing writer and the queries."""
