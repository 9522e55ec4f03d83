import numpy as np
import pytest

from harness.common.errors import ConfigError
from harness.engine.config import make_config
from harness.engine.data import load_split


@pytest.mark.parametrize("name,classes", [("digits", 10), ("iris", 3), ("wine", 3), ("breast_cancer", 2)])
def test_builtin_sets_load_and_split_stratified(name, classes):
    split = load_split(make_config({"dataset": name}))
    assert split.n_classes == classes
    n = len(split.y_train) + len(split.y_val) + len(split.y_test)
    assert len(split.y_val) == pytest.approx(0.2 * n, abs=classes + 1)
    for part in (split.y_train, split.y_val, split.y_test):  # every class in every part, in proportion
        shares = np.bincount(part, minlength=classes) / len(part)
        overall = np.bincount(split.y_train, minlength=classes) / len(split.y_train)
        np.testing.assert_allclose(shares, overall, atol=0.05)


@pytest.mark.parametrize("name", ["moons", "circles", "blobs", "classification"])
def test_generated_sets_take_a_size(name):
    split = load_split(make_config({"dataset": name, "n_samples": 500}))
    assert len(split.y_train) + len(split.y_val) + len(split.y_test) == 500


def test_scaling_is_fitted_on_train_only():
    split = load_split(make_config({"dataset": "wine"}))
    np.testing.assert_allclose(split.x_train.mean(0), 0, atol=1e-12)
    assert not np.allclose(split.x_val.mean(0), 0, atol=1e-3)


def test_digest_names_exactly_what_was_seen():
    a = load_split(make_config({"dataset": "iris"}))
    b = load_split(make_config({"dataset": "iris"}))
    c = load_split(make_config({"dataset": "iris", "data_seed": 1}))
    d = load_split(make_config({"dataset": "iris", "dtype": "float32"}))
    assert a.digest == b.digest
    assert len({a.digest, c.digest, d.digest}) == 3
    assert d.x_train.dtype == np.float32


def test_user_csv_with_text_labels(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["f1,f2,species"] + [f"{rng.normal()},{rng.normal()},{'ab'[i % 2]}" for i in range(40)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows))
    split = load_split(make_config({"dataset": "csv", "csv": str(path), "label_column": "species"}))
    assert split.classes == ["a", "b"] and split.n_features == 2


def test_na_none_and_null_are_class_names_as_written(tmp_path):
    """pandas reads "NA", "None" and "null" as missing: a label column naming a region "NA" was refused as
    having empty cells it did not have."""
    rows = ["f1,region"] + [f"{i}.5,{['NA', 'None', 'null', 'EU'][i % 4]}" for i in range(40)]
    path = tmp_path / "regions.csv"
    path.write_text("\n".join(rows) + "\n")
    split = load_split(make_config({"csv": str(path), "label_column": "region"}))
    assert split.classes == ["EU", "NA", "None", "null"] and len(split.y_train) == 24


def test_classes_are_ordered_as_sorted_values(tmp_path):
    """Integers by value (9 before 10), text by code point (capitals first): docs/studies.md says so."""
    for name, labels, order in [("n", [10, 9], ["9", "10"]), ("t", ["b", "a", "C"], ["C", "a", "b"])]:
        path = tmp_path / f"{name}.csv"
        path.write_text(f"f1,{name}\n" + "".join(f"{i}.5,{labels[i % len(labels)]}\n" for i in range(60)))
        assert load_split(make_config({"csv": str(path), "label_column": name})).classes == order


@pytest.mark.parametrize(
    "content,label,message",
    [
        ("a,b\n1,2\n3,4\n", "label", "label_column = 'label' is not a column"),
        ("a,label\nx,1\ny,0\n", "label", "column 'a' is not numeric \\(data row 1 holds 'x'\\)"),
        ("a,label\n1,1\n,0\n", "label", "column 'a' has an empty cell in data row 2; fill it or drop the rows"),
        ("a,label\n1,1\n2,\n", "label", "column 'label' has an empty cell in data row 2"),
        ("a,label\n1,1\nNA,0\n", "label", "column 'a' is not numeric \\(data row 2 holds 'NA'\\)"),
        ("label\n1\n0\n", "label", "no feature columns"),
    ],
)
def test_bad_csv_gets_one_clear_error(tmp_path, content, label, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_split(make_config({"dataset": "csv", "csv": str(path), "label_column": label}))


def test_missing_csv_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_split(make_config({"csv": str(tmp_path / "nope.csv"), "dataset": "csv"}))


@pytest.mark.parametrize(
    "content,message",
    [
        ("a,label,label\n1,0,1\n2,1,0\n3,0,1\n4,1,0\n", "column name 'label' appears more than once"),
        ("a,a,label\n1,2,0\n2,3,1\n3,4,0\n4,5,1\n", "column name 'a' appears more than once"),
        ("a,b,label\n1,inf,0\n2,3,1\n3,4,0\n4,5,1\n", "column 'b' holds an infinite value"),
        ("a,b,label\n1,-inf,0\n2,3,1\n3,4,0\n4,5,1\n", "column 'b' holds an infinite value"),
        ("a,b,label\n1e309,2,0\n2,3,1\n3,4,0\n4,5,1\n", "column 'a' holds an infinite value"),
    ],
)
def test_csv_that_would_train_on_something_else_is_refused(tmp_path, content, message):
    """pandas renames a repeated 'label' to 'label.1' and would train on it as a feature."""
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_split(make_config({"dataset": "csv", "csv": str(path)}))


def test_csv_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_split(make_config({"dataset": "csv", "csv": str(tmp_path)}))


def _rows(classes, per_class):
    return "".join(f"{i}.5,{i % 7},{label}\n" for i, label in enumerate(classes * per_class))


SPLIT = "a train/validation/test split of {} classes, one row of each in every part, needs at least {}"


@pytest.mark.parametrize(
    "rows,message",
    [
        ("", "has 0 data rows; " + SPLIT.format(2, 8)),
        ("1,2,a\n", "has 1 data row; " + SPLIT.format(2, 8)),
        (_rows("ab", 3) + "9,9,a\n", "has 7 data rows; " + SPLIT.format(2, 8)),
        (_rows("abc", 4), "has 12 data rows; " + SPLIT.format(3, 13)),
    ],
)
def test_a_csv_with_too_few_rows_says_how_many_it_has_and_needs(tmp_path, rows, message):
    """A header alone was read as text columns ("column 'a' is not numeric")."""
    path = tmp_path / "few.csv"
    path.write_text("a,b,label\n" + rows)
    with pytest.raises(ConfigError) as refused:
        load_split(make_config({"dataset": "csv", "csv": str(path)}))
    assert str(refused.value).startswith(f"{path}: {message}"), str(refused.value)


@pytest.mark.parametrize("classes,needed", [("ab", 8), ("abc", 13)])
def test_the_rows_needed_are_enough(tmp_path, classes, needed):
    path = tmp_path / "enough.csv"
    path.write_text("a,b,label\n" + _rows(classes, needed // len(classes)) + _rows(classes[0], needed % len(classes)))
    split = load_split(make_config({"dataset": "csv", "csv": str(path)}))
    assert len(split.y_train) + len(split.y_val) + len(split.y_test) == needed
    assert all(len(np.unique(part)) == len(classes) for part in (split.y_train, split.y_val, split.y_test))


@pytest.mark.parametrize("rare", [1, 2])
def test_a_class_too_rare_to_reach_every_part_is_named(tmp_path, rare):
    path = tmp_path / "rare.csv"
    path.write_text("a,b,label\n" + _rows("a", 30) + _rows("b", rare))
    with pytest.raises(ConfigError, match=f"class 'b' has {rare} of the {30 + rare} rows, too few"):
        load_split(make_config({"dataset": "csv", "csv": str(path)}))
