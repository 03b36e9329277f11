"""Alembic migrations (script_location `bot.adapters.store:schema`), applied by Store.open.

versions/NNNN_name.py, forward only. Run from code by bot.adapters.store.migrations; the
`alembic` command works too from a checkout ([tool.alembic] in pyproject.toml), e.g.
`alembic revision -m "add x"` for the next one, or `alembic -x url=postgresql://… upgrade
head --sql` to see the DDL.
"""
