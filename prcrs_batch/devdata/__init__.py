"""Loaders that write development cohorts as a contract or OMOP warehouse.

For demos, tests and offline training only; never on the night.
"""
