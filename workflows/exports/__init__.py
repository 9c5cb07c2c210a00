"""Exports for auditors: the inventory (CSV, JSON, CycloneDX 1.6 ML-BOM), the decision log with its
hashes, and who had access to what, now or as of any past instant (replayed from the log).

Every export is an iterator of rows that reads the database in batches (keyset pagination), so the
command line can stream it to a file without holding the whole result in memory.
"""
