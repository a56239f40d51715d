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
