"""Stage files written and read chunk by chunk (retention/infra/parquet.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from retention.infra import parquet


def test_each_chunk_is_one_row_group_and_reads_back_with_its_pandas_types(tmp_path):
    path = tmp_path / "stage.parquet"
    chunks = [pd.DataFrame({"customer_id": pd.Series(["a", "b"], dtype="str"),
                            "tenure": pd.array([1, None], dtype="Int64"), "ok": pd.array([True, None], dtype="boolean")}),
              pd.DataFrame({"customer_id": pd.Series(["c"], dtype="str"), "tenure": pd.array([3], dtype="Int64"),
                            "ok": pd.array([False], dtype="boolean")})]
    with parquet.chunk_writer(path) as out:
        for chunk in chunks:
            out.write(chunk)
    assert parquet.group_sizes(path) == [2, 1] and parquet.num_rows(path) == 3
    back = list(parquet.row_groups(path))
    for got, want in zip(back, chunks):
        pd.testing.assert_frame_equal(got, want)
    assert parquet.read_columns([path, path], ["customer_id"])["customer_id"].tolist() == list("abcabc")


def test_a_chunk_whose_text_column_is_all_null_takes_the_later_chunks_text(tmp_path):
    path = tmp_path / "decide.parquet"
    with parquet.chunk_writer(path) as out:
        out.write(pd.DataFrame({"reason_codes": [[], []], "message": [None, None]}))
        out.write(pd.DataFrame({"reason_codes": [["tenure_months"]], "message": ["Hi Ana"]}))
    got = pd.read_parquet(path)
    assert [list(v) for v in got["reason_codes"]] == [[], [], ["tenure_months"]]
    assert got["message"].tolist()[2] == "Hi Ana" and got["message"].isna().sum() == 2


def test_a_chunk_with_other_columns_fails_and_a_failed_stage_leaves_no_file(tmp_path):
    path = tmp_path / "score.parquet"
    with pytest.raises(ValueError, match="columns"):
        with parquet.chunk_writer(path) as out:
            out.write(pd.DataFrame({"a": [1]}))
            out.write(pd.DataFrame({"b": [1]}))
    assert not path.exists()


def test_empty_chunks_before_the_first_rows_keep_their_row_groups_and_take_its_types(tmp_path):
    """A score shard's first chunks can hold none of its customers: their empty object columns have no type yet."""
    path = tmp_path / "score-00001-of-00004.parquet"
    with parquet.chunk_writer(path) as out:
        out.write(pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "reason_codes": pd.Series([], dtype=object)}))
        out.write(pd.DataFrame({"customer_id": pd.Series(["a"], dtype="str"), "reason_codes": [[]]}))
        out.write(pd.DataFrame({"customer_id": pd.Series(["b"], dtype="str"), "reason_codes": [["tenure_months"]]}))
    assert parquet.group_sizes(path) == [0, 1, 1]
    assert [list(v) for v in pd.read_parquet(path)["reason_codes"]] == [[], ["tenure_months"]]


def test_pages_are_gathered_in_order_into_tables_of_at_least_the_asked_rows():
    import pyarrow as pa

    from retention.infra import bq

    batches = [pa.record_batch({"n": list(range(s, s + size))}) for s, size in ((0, 2), (2, 3), (5, 1), (6, 4))]
    got = [t.column("n").to_pylist() for t in bq.gathered(batches, 4)]
    assert got == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [t.num_rows for t in bq.gathered(batches, 100)] == [10]
    assert list(bq.gathered([], 4)) == []


def test_spilled_rows_go_to_their_ids_bucket_in_arrival_order(tmp_path):
    import numpy as np
    import pyarrow as pa

    from retention import hashing
    from retention.infra import bq

    ids = [f"c{i}" for i in range(60)]
    parts = [parquet.ChunkWriter(tmp_path / f"{b}.parquet") for b in range(5)]
    for start in range(0, 60, 25):  # three spills: each bucket's file gets a row group from each
        bq.spill_by_bucket(pa.table({"customer_id": ids[start:start + 25], "n": range(start, min(start + 25, 60))}),
                           parts)
    for part in parts:
        part.close()
    bucket = (hashing.stable_hash(pd.Series(ids)) >> np.uint64(32)) % np.uint64(5)
    for b, part in enumerate(parts):
        got = pd.read_parquet(part.path)
        assert got["n"].tolist() == [i for i in range(60) if bucket[i] == b]  # every row once, in arrival order
