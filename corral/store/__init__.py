"""The store: every read and write of corral's state goes through here.

``tables`` declares the schema, ``types`` holds dialect shims, ``queries``
is the only module that builds SQL, ``migrate`` applies Alembic migrations.
"""

from corral.store.queries import Store, open_store

__all__ = ["Store", "open_store"]
