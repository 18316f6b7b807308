"""pgclip: CLIP embeddings for PostgreSQL.

The extension's PL/Python functions import :mod:`pgclip.sql_api`; every other module is plain
Python that can be used and tested without a database.
"""

__version__ = "0.6.0"  # the one source of the version (extension/build_sql.py, pyproject.toml)
