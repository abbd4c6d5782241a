"""The results database: engines, migrations, tables, schema text, a night's rows.

A night's run and all its rows commit in one transaction; Alembic owns the schema.
"""
