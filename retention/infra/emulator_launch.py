"""Start bqemulator with no network: run by the emulator's own venv, never imported by the package.

DuckDB's spatial and Avro extensions are downloaded at start-up, which cannot work offline;
the data contract uses neither GEOGRAPHY nor Avro, so both loads are skipped.
"""
import sys

from bqemulator.storage.engine import DuckDBEngine

DuckDBEngine._load_spatial = lambda self: None
DuckDBEngine._load_format_extensions = lambda self: None

from bqemulator.cli import main  # noqa: E402  (after the patch, so the server sees it)

sys.exit(main())
