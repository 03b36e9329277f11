"""For the `alembic` command line only; Store.open runs the migrations without this file.

alembic -x url=sqlite:///data/bot.db current
alembic -x url=postgresql://user@host/db upgrade head --sql    (prints the DDL)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from bot.adapters.store.tables import metadata

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
    "sqlalchemy.url"
)
if not url:
    raise SystemExit("give the database: alembic -x url=sqlite:///data/bot.db …")
# The command line is synchronous: use the plain drivers' dialects.
sync_url = sa.make_url(url).set(drivername=sa.make_url(url).get_backend_name())

if context.is_offline_mode():
    context.configure(url=sync_url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = sa.create_engine(sync_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
