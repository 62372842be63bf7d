"""Alembic's entry point for this package's revisions; node.index.migrate.upgrade runs it."""

from alembic import context

from node.index.migrate import run_migrations

run_migrations(context)
