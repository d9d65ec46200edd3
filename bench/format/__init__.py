"""The saved-run contract: shared names, the device kinds, the records and their history, the schema, run files
and the journal.

Every stage imports it; it imports neither torch nor pandas (docs/design.md).
"""
