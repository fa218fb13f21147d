"""Rich tables that stay readable in a narrow terminal (the CLI's and the benchmarks' reports).

Numbers go in `number_column`s (never wrapped, never cut); text goes in `text_column`s (folded onto
more lines); `fit_table` then leaves out the less important columns, in the order given, until the
table fits the console width, instead of letting rich cut every cell to "…".
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def number_column(table: Table, header: str, **kwargs: Any) -> None:
    """A right-aligned column that is never wrapped or cut (numbers, short codes)."""
    table.add_column(header, justify="right", no_wrap=True, **kwargs)


def text_column(table: Table, header: str, **kwargs: Any) -> None:
    """A left-aligned text column that folds long values onto more lines instead of cutting them."""
    table.add_column(header, overflow="fold", **kwargs)


FOLD_MIN = 10  # a folding text column still gets this many characters (or its whole text if shorter)


def table_min_width(table: Table, console: Console, fold_min: int = FOLD_MIN) -> int:
    """The width the table needs without cutting a cell: no-wrap columns at their widest cell,
    folding text columns at `fold_min` at least, plus borders and padding."""
    options = console.options.update(width=10_000)
    need = 0
    for col in table.columns:
        widest = max(Measurement.get(console, options, cell).maximum for cell in (col.header, *col.cells))
        need += widest if col.no_wrap else min(widest, fold_min)
    _top, right, _bottom, left = table.padding
    per_column = left + right + (1 if table.box else 0)
    return need + per_column * len(table.columns) + (1 if table.box and table.show_edge else 0)


def fit_table(table: Table, width: int, drop: Sequence[str] = (), fold_min: int = FOLD_MIN) -> Table:
    """Remove the columns named in `drop` (by header, in that order) while the table is still wider
    than `width` (see `table_min_width`), so rich never has to cut every cell to "…".

    Columns not in `drop` are always kept; text columns are expected to fold (`text_column`) and
    to keep `fold_min` characters of width."""
    console = Console(width=max(width, 20))
    for header in drop:
        if table_min_width(table, console, fold_min) <= width:
            break
        table.columns[:] = [c for c in table.columns if str(c.header) != header]
    return table
