"""What every layer may use: the error kinds, secrets kept out of text, strict JSON, child processes,
interrupts, fault points for the recovery tests, bounded patience with shared services, database reachability.
Imports nothing of the other groups.
"""
