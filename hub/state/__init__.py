"""The store: one SQLite file (WAL), its schema, and the records read from and written to it.

Every state transition is one transaction. Nothing here talks to a cluster or knows the
format of an Application; callers hand it records.
"""
