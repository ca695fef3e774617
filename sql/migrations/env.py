"""Alembic environment for the ``tw_`` result tables, driven only by ``tasks.migrate``.

There is no alembic.ini: ``tasks.migrate`` builds the Alembic ``Config`` in code and
passes an open connection in ``config.attributes["connection"]``, already inside the
transaction (and holding the lock) it wants the migrations to run in. Running the
migrations in that caller's transaction is what makes two concurrent upgrades safe: the
second one waits for the lock and then finds the database already at head.

The version table is ``tw_alembic_version`` rather than Alembic's default, so a results
database shared with an application that has its own ``alembic_version`` never mixes
the two histories.

Writing a new revision: add ``versions/NNNN_<what>.py`` by hand (copy the newest one),
with the table definitions written out in it rather than imported from
``tasks.schema``; SQLite can only add columns in place, so anything more needs
``op.batch_alter_table``. ``tests/test_migrations.py`` fails until the migrations and
``tasks.schema`` describe the same tables.
"""

from __future__ import annotations

from alembic import context

VERSION_TABLE = "tw_alembic_version"

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    # The baseline inspects the live database (it adopts tables a pre-Alembic version
    # created), so SQL scripts generated offline could not be right.
    raise RuntimeError(
        "tablewatch migrations run online only, through tasks.migrate.upgrade "
        "(or `tablewatch db upgrade --config <file>`)"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
