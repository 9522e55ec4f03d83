"""The numpy core: data sets and splits, the validated settings of a run, activations, losses,
the stacked network, optimizers, schedules and the training loop. Imports neither mlflow nor optuna.
"""
