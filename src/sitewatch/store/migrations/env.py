"""Alembic's environment for the store: run by :func:`sitewatch.store._migrate.upgrade` on an open connection.

There is no alembic.ini: the configuration is built in code, and the connection is passed in
``config.attributes["connection"]``.  New revisions: ``alembic -x ... revision`` is not wired; copy the
latest file in ``versions/``, give it the next number as ``revision`` and the current head as
``down_revision``, and set ``HEAD`` in ``_migrate.py`` (a test checks they agree).
"""

from alembic import context

from sitewatch.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
