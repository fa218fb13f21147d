"""110 alarm-desk JJD rows: pure translate."""
from connectors.sources.alarm110.translate import read_csv, translate_csv, translate_row, translate_rows

__all__ = ["read_csv", "translate_csv", "translate_row", "translate_rows"]
