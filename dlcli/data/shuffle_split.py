"""scikit-learn's train_test_split (ShuffleSplit, StratifiedShuffleSplit), re-done with numpy alone.

Importing sklearn.model_selection costs about 2 s of CPU in every process (scipy and its own
machinery), more than the rest of dlcli's start-up; every run with a validation split and the
digits dataset paid it. This follows sklearn's algorithm step by step (the same RandomState draws
in the same order), so the same seed picks the same samples as before, and tests compare it with
sklearn itself over many label sets, sizes and seeds (tests/data/test_shuffle_split.py).
"""

import math


def train_test_indices(n: int, n_test: int, seed: int, labels=None) -> tuple[list[int], list[int]]:
    """(train, test) index lists as `train_test_split(range(n), test_size=n_test, random_state=seed,
    stratify=labels)` returns them (train: every other index, in sklearn's shuffled order)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    n_train = n - n_test
    if labels is None:
        permutation = rng.permutation(n)
        return permutation[n_test:n_test + n_train].tolist(), permutation[:n_test].tolist()
    classes, y_indices = np.unique(np.asarray(labels), return_inverse=True)
    class_counts = np.bincount(y_indices)
    class_indices = np.split(np.argsort(y_indices, kind="mergesort"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list = []
    test: list = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(members[:n_i[i]])
        test.extend(members[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train).tolist(), rng.permutation(test).tolist()


def count_of_fraction(n: int, fraction: float) -> int:
    """sklearn's test size for a float test_size: ceil(fraction * n)."""
    return math.ceil(fraction * n)


def _approximate_mode(class_counts, n_draws: int, rng):
    """Per class, how many of n_draws to take: the floor of its share, plus one for the classes with
    the largest remainders (ties broken by rng), as sklearn.utils.extmath._approximate_mode."""
    import numpy as np

    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
