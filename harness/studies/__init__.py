"""Study files: a study's conditions, search space, budget and seeds (``study``), parsed and
checked from TOML (``parse``). Imports only the engine (a condition is a set of run settings).
"""
