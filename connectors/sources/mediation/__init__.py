"""People's-mediation exports and REST cases: pure translate."""
from connectors.sources.mediation.translate import (
    read_csv,
    read_xlsx,
    translate_csv,
    translate_json,
    translate_rows,
    translate_xlsx,
)

__all__ = ["read_csv", "read_xlsx", "translate_csv", "translate_json", "translate_rows", "translate_xlsx"]
