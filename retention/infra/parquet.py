"""Stage files written and read one chunk (Parquet row group) at a time, so a stage's memory does not grow with
the day: the chunk is the unit every streaming stage works on."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def row_groups(path: str | Path, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """Each row group of a Parquet file as a DataFrame (pandas dtypes restored from the file's metadata)."""
    f = pq.ParquetFile(path)
    for i in range(f.num_row_groups):
        yield f.read_row_group(i, columns=list(columns) if columns is not None else None).to_pandas()


def num_rows(path: str | Path) -> int:
    """Rows of a Parquet file, from its footer."""
    return pq.ParquetFile(path).metadata.num_rows


def group_sizes(path: str | Path) -> list[int]:
    """Rows of each row group of a Parquet file, from its footer."""
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def read_columns(paths: Sequence[str | Path], columns: Sequence[str]) -> pd.DataFrame:
    """Only `columns` of the files, one after another, as one frame (row groups in file order)."""
    parts = [pq.read_table(p, columns=list(columns)).to_pandas() for p in paths]
    return pd.concat(parts, ignore_index=True) if len(parts) != 1 else parts[0]


class ChunkWriter:
    """Appends DataFrames to a Parquet file, one row group each (an empty chunk too: files chunked alike keep their
    row groups aligned), with the first non-empty chunk's schema."""

    def __init__(self, path: Path):
        self.path, self.writer, self.rows, self.closed = path, None, 0, False
        self.pending: list[pa.Table] = []  # empty chunks before the first one that shows the column types

    def write(self, df: pd.DataFrame, arrow: Mapping[str, pa.Array] | None = None) -> None:
        """One chunk: the frame's columns, then `arrow`'s (columns built as Arrow arrays, written as they are)."""
        table = pa.Table.from_pandas(df, preserve_index=False)
        for name, values in (arrow or {}).items():
            table = table.append_column(name, values)
        self.write_arrow(table)

    def write_arrow(self, table: pa.Table) -> None:
        if self.writer is None and table.num_rows == 0:
            self.pending.append(table)  # an empty object column has no type yet
            return
        self._open(table.schema)
        self._write(table)

    def _open(self, schema: pa.Schema) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, _text_for_null(schema))
            for empty in self.pending:
                self._write(empty)
            self.pending = []

    def _write(self, table: pa.Table) -> None:
        if table.schema != self.writer.schema:
            table = _conform(table, self.writer.schema)
        self.writer.write_table(table, row_group_size=max(1, len(table)))
        self.rows += len(table)

    def close(self) -> None:
        if self.pending and not self.closed:
            self._open(self.pending[0].schema)
        if self.writer is not None and not self.closed:
            self.writer.close()
        self.closed = True


def _text_for_null(schema: pa.Schema) -> pa.Schema:
    """The first chunk's schema with its null-typed columns as text: a column of object dtype that holds only None
    (or empty lists) in one chunk holds text (or lists of text) in the others, as every such column here does."""
    def typed(t: pa.DataType) -> pa.DataType:
        if pa.types.is_null(t):
            return pa.string()
        return pa.list_(typed(t.value_type)) if pa.types.is_list(t) else t
    return pa.schema([f.with_type(typed(f.type)) for f in schema], metadata=schema.metadata)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in the writer's schema: the same columns, cast where a chunk's types differ (an all-null column)."""
    if table.schema.names != schema.names:
        raise ValueError(f"a chunk's columns {table.schema.names} differ from the file's {schema.names}")
    if table.num_rows == 0:
        return schema.empty_table()
    return pa.Table.from_arrays([c.cast(f.type) for c, f in zip(table.columns, schema)], schema=schema)


@contextmanager
def chunk_writer(path: Path, empty: pd.DataFrame | None = None) -> Iterator[ChunkWriter]:
    """A ChunkWriter on a temp name, renamed to `path` only when the block succeeds: a killed or failed stage
    leaves no half file. `empty` (the frame's columns with no rows) is written when no chunk was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer = ChunkWriter(tmp)
    try:
        yield writer
        if writer.writer is None and empty is not None:
            writer.write(empty)
    finally:
        writer.close()
    tmp.replace(path)
