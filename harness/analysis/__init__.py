"""The comparison of a study's conditions from its records: the statistics (``stats``), what they
are applied to (``comparisons``), the summary table, the findings in sentences, the report and
the whole comparison (``study_comparison``). Neither trains nor searches: no optuna, no training loop.
"""
