"""The FLOP lower bound ``benchmarks/bench_leaderboard.py`` divides by wall time, recounted by hand."""

from tests.helpers import ROOT, load_file


def load_script():
    return load_file(ROOT / "benchmarks" / "bench_leaderboard.py")


def test_epoch_flops_counts_the_matrix_products_of_a_tiny_network_by_hand():
    bench = load_script()
    # 2 inputs, 3 hidden, 2 classes: weights (2 x 3) and (3 x 2), 6 multiply-adds each per row.
    # Training row: forward 2*6 + 2*6 = 24; weight gradients a^T d: 2*6 + 2*6 = 24; the input gradient of
    # the second layer d W2^T: 2*6 = 12 (none for the first: nothing consumes it) -> 60 FLOPs.
    # Validation row: one forward pass, 24. Training-split scoring: 24 more per training row.
    assert bench.epoch_flops([2, 3, 2], train_rows=10, val_rows=5) == 10 * 60 + 5 * 24
    assert bench.epoch_flops([2, 3, 2], train_rows=10, val_rows=5, score_train=True) == 10 * 60 + 5 * 24 + 10 * 24
    # Two hidden layers (4 inputs, 5, 6, 3 classes): weights 20 + 30 + 18 = 68; input gradients of layers
    # 2 and 3 only: 2 * (30 + 18) = 96; a training row 2*68 + 2*68 + 96 = 368.
    assert bench.epoch_flops([4, 5, 6, 3], train_rows=1, val_rows=0) == 368


def test_the_lower_bound_weights_each_condition_by_its_own_epochs_and_scoring():
    bench = load_script()
    described = {
        "a": {"sizes": [2, 3, 2], "train": 10, "val": 5},
        "b": {"sizes": [4, 5, 6, 3], "train": 1, "val": 2},
    }
    # a: 3 epochs, 1 of them in a run that scores the training split; b: 2 epochs, none.
    per_condition = {"a": (3, 1), "b": (2, 0)}
    expected = 3 * (10 * 60 + 5 * 24) + 1 * (10 * 24) + 2 * (1 * 368 + 2 * 2 * 68)
    assert bench.lower_bound(per_condition, described) == expected
