"""Write studies/my_data.csv, the CSV that studies/my_csv.toml trains on: a user's own data, as a file.

The rows are scikit-learn's copy of the Wisconsin diagnostic breast cancer data (569 tumours, UCI
Machine Learning Repository, Street, Wolberg and Mangasarian 1993; `sklearn.datasets.load_breast_cancer`,
no download): the ten "mean" measurements of each tumour's cell nuclei as named feature columns, and
the diagnosis as words ("benign", "malignant") in a label column. Run from the repository's root:

    .venv/bin/python scripts/make_my_data.py
"""

from pathlib import Path

from sklearn.datasets import load_breast_cancer

OUT = Path(__file__).resolve().parent.parent / "studies" / "my_data.csv"


def my_data():
    """The table as a pandas DataFrame: the ten "mean" columns (spaces made underscores), then ``diagnosis``."""
    data = load_breast_cancer(as_frame=True)
    means = [name for name in data.feature_names if name.startswith("mean ")]
    frame = data.frame[means].rename(columns=lambda name: name.replace(" ", "_"))
    frame["diagnosis"] = [str(data.target_names[i]) for i in data.target]
    return frame


def main():
    frame = my_data()
    frame.to_csv(OUT, index=False)
    print(f"wrote {OUT}: {len(frame)} rows, {frame.shape[1] - 1} features, label column 'diagnosis'")


if __name__ == "__main__":
    main()
