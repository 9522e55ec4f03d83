"""MLflow, the record of every run: where the store is (``store``), the operations on it
(``operations``, ``models``) and who runs them (``recorder``); a training result as a run (``runs``), a
study's runs as one table (``table``), a condition's parent run (``parents``), a logged run read back
(``logged``, ``weights``, ``pyfunc``), provenance, run plots and the UI. Imports no optuna.
"""
