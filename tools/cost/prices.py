"""The price table: tools/cost/prices.csv, one row per (region, service, item), as exact decimals."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

PRICES_CSV = Path(__file__).resolve().parent / "prices.csv"
COLUMNS = ("region", "service", "item", "unit", "usd", "as_of", "source", "note")


class PriceTableError(ValueError):
    """prices.csv is malformed; str() names the line."""


@dataclass(frozen=True)
class Price:
    region: str
    service: str
    item: str
    unit: str
    usd: Decimal
    as_of: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class PriceTable:
    prices: dict[tuple[str, str, str], Price]
    path: Path = PRICES_CSV

    def get(self, region: str, service: str, item: str) -> Price | None:
        return self.prices.get((region, service, item))

    def regions(self) -> list[str]:
        return sorted({region for region, _, _ in self.prices})

    def as_of(self, region: str) -> list[str]:
        return sorted({p.as_of for (r, _, _), p in self.prices.items() if r == region})


def parse(text: str, path: Path = PRICES_CSV) -> PriceTable:
    """Rows after the `#` comment lines; every price positive, dated and sourced, none given twice."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise PriceTableError(f"{path}: header must be {','.join(COLUMNS)}, not {','.join(reader.fieldnames or ())}")
    prices: dict[tuple[str, str, str], Price] = {}
    for number, row in enumerate(reader, start=2):
        where = f"{path} row {number}"
        try:
            usd = Decimal(row["usd"])
        except (InvalidOperation, TypeError):
            raise PriceTableError(f"{where}: usd {row['usd']!r} is not a number") from None
        if usd < 0:
            raise PriceTableError(f"{where}: usd {usd} is negative")
        if not row["source"] or not row["source"].startswith("https://"):
            raise PriceTableError(f"{where}: source must be the https URL the price was read from")
        if len(row["as_of"] or "") != 10:
            raise PriceTableError(f"{where}: as_of {row['as_of']!r} must be a date YYYY-MM-DD")
        key = (row["region"], row["service"], row["item"])
        if key in prices:
            raise PriceTableError(f"{where}: {'/'.join(key)} is listed twice")
        prices[key] = Price(row["region"], row["service"], row["item"], row["unit"], usd, row["as_of"],
                            row["source"], row["note"] or "")
    return PriceTable(prices, path)


def load(path: Path = PRICES_CSV) -> PriceTable:
    return parse(path.read_text(encoding="utf-8"), path)
