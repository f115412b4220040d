import pytest
import torch

from minitx.data import (DataUnavailableError, EncodedSplit, balanced_indices, evaluation_batches,
                         imdb_subsets, load_imdb, split_validation, training_batches, truncate)
from minitx.tokenizer import PAD_ID


def test_balanced_indices_are_balanced_distinct_and_seeded():
    labels = [0] * 700 + [1] * 300            # sorted by label, like the Hub
    picked = balanced_indices(labels, 200, seed=3)
    assert len(picked) == len(set(picked)) == 200
    assert sum(labels[i] for i in picked) == 100
    assert picked == balanced_indices(labels, 200, seed=3)
    assert picked != balanced_indices(labels, 200, seed=4)
    assert sorted(balanced_indices(labels, None, seed=0)) == list(range(1000))
    with pytest.raises(ValueError, match="only 300"):
        balanced_indices(labels, 800, seed=0)


def test_validation_is_balanced_and_disjoint_from_training():
    labels = [0, 1] * 100
    train, val = split_validation(list(range(200)), labels, 0.1, seed=0)
    assert len(val) == 20 and sum(labels[i] for i in val) == 10
    assert not set(train) & set(val) and len(train) + len(val) == 200


def test_truncation_keeps_head_or_head_and_tail():
    ids = list(range(100))
    assert truncate(ids, 8, "head") == list(range(8))
    assert truncate(ids, 8, "head_tail") == [0, 1] + list(range(94, 100))
    assert truncate(ids[:5], 8) == ids[:5]


def _split(lengths):
    seqs = [[2] + [5] * (n - 1) for n in lengths]
    return EncodedSplit(seqs, [i % 2 for i in range(len(lengths))], [""] * len(lengths))


def _padding(batches):
    return sum(int((b.ids == PAD_ID).sum()) for b in batches)


def test_training_batches_cover_every_row_once_with_right_padding():
    g = torch.Generator().manual_seed(0)
    split = _split(torch.randint(2, 300, (500,), generator=g).tolist())
    batches = training_batches(split, batch_size=16, seed=1)
    rows = [r for b in batches for r in b.rows]
    assert sorted(rows) == list(range(500))
    for b in batches:
        assert b.ids.size(1) == max(len(split.sequences[r]) for r in b.rows)   # dynamic padding
        for row, r in zip(b.ids, b.rows):
            n = len(split.sequences[r])
            assert row[:n].tolist() == split.sequences[r] and (row[n:] == PAD_ID).all()
    assert [b.rows for b in training_batches(split, 16, seed=1)] == [b.rows for b in batches]
    assert [b.rows for b in training_batches(split, 16, seed=2)] != [b.rows for b in batches]
    # bucketing removes most of the padding that random batches carry
    assert _padding(batches) < 0.25 * _padding(training_batches(split, 16, seed=1, bucket=False))


def test_evaluation_batches_cover_every_row_within_a_token_budget():
    split = _split([5, 300, 7, 120, 60] * 40)
    batches = evaluation_batches(split, max_tokens=1000)
    assert sorted(r for b in batches for r in b.rows) == list(range(200))
    assert all(b.ids.numel() <= 1000 or len(b.rows) == 1 for b in batches)


def test_unloadable_source_says_how_to_fix_it(tmp_path):
    with pytest.raises(DataUnavailableError, match="MINITX_IMDB") as error:
        load_imdb(str(tmp_path / "no-such-folder"))
    assert "go online" in str(error.value)


def test_imdb_subsets_are_balanced(imdb):
    subsets = imdb_subsets(200, 100, 0.1, seed=0)
    assert [len(subsets[s].texts) for s in ("train", "val", "test")] == [180, 20, 100]
    for name, split in subsets.items():
        assert sum(split.labels) * 2 == len(split.labels), name
    assert not set(subsets["train"].texts) & set(subsets["val"].texts)
