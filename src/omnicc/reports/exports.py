"""A report as a table for people: CSV and XLSX (XlsxWriter), with the keys' names, a total
row, ratios as ratios and seconds as seconds, so a spreadsheet can compute on them."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping

import xlsxwriter

from omnicc.reports.queries import FIGURES, Report

FIGURE_TITLES = {
    "offered": "Offered", "handled": "Handled", "abandoned": "Abandoned",
    "abandonment_rate": "Abandonment rate", "short_abandoned": "Short abandons",
    "avg_abandon_wait_s": "Avg wait before abandon (s)",
    "service_level_sl1": "SL1 (handled in T / handled)",
    "service_level_sl2": "SL2 (handled in T / handled + abandoned after T)",
    "service_level_sl3": "SL3 (handled in T / offered)", "asa_s": "ASA (s)", "aht_s": "AHT (s)",
    "avg_talk_s": "Avg talk (s)", "avg_hold_s": "Avg hold (s)", "avg_wrap_s": "Avg wrap-up (s)",
    "transfers": "Transfers", "transfers_in": "Offered by transfer", "timed_out": "Timed out",
    "fcr_rate": "First-contact resolution", "csat": "CSAT (4-5 of 5)",
    "csat_answers": "Survey answers", "occupancy": "Occupancy", "utilisation": "Utilisation",
    "logged_in_s": "Logged in (s)", "available_s": "Available (s)", "break_s": "Break (s)",
}
"""Column titles (METRICS.md's names)."""
RATIOS = frozenset({"abandonment_rate", "service_level_sl1", "service_level_sl2",
                    "service_level_sl3", "fcr_rate", "csat", "occupancy", "utilisation"})


def table_rows(report: Report, names: Mapping[str, str]) -> list[list[object]]:
    """Header, one line per row, then the total: what both formats write."""
    dimension = report.request.dimension
    header: list[object] = ["Period", dimension.capitalize(),
                            *[FIGURE_TITLES[f] for f in FIGURES]]
    lines: list[list[object]] = [header]
    for row in [*report.rows, report.total]:
        label = names.get(row.key, row.key) if row.key else (
            "(none)" if row.period and dimension != "total" else "")
        period = row.period or "Total"
        lines.append([period, label, *[_value(row.figures[f]) for f in FIGURES]])
    return lines


def _value(value: float | None) -> object:
    if value is None:
        return ""
    return round(value, 6) if isinstance(value, float) else value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: object) -> object:
    """A text cell a spreadsheet will not run as a formula (a segment or team named `=...` is
    data typed by people): quoted as OWASP's CSV-injection advice says."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_csv(report: Report, names: Mapping[str, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for line in table_rows(report, names):
        writer.writerow([_inert(value) for value in line])
    return buffer.getvalue()


def report_xlsx(report: Report, names: Mapping[str, str], *, title: str = "Report") -> bytes:
    """One worksheet: a frozen header, percentages formatted as such, a bold total."""
    buffer = io.BytesIO()
    # Text stays text: no formulas or links made from names people typed.
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_urls": False})
    sheet = book.add_worksheet(re.sub(r"[\[\]:*?/\\']", " ", title).strip()[:31] or "Report")
    bold = book.add_format({"bold": True, "bg_color": "#eef2f7", "border": 1,
                            "text_wrap": True, "valign": "top"})
    percent = book.add_format({"num_format": "0.0%"})
    seconds = book.add_format({"num_format": "0.0"})
    total = book.add_format({"bold": True, "top": 1})
    lines = table_rows(report, names)
    sheet.write_row(0, 0, lines[0], bold)
    for index, line in enumerate(lines[1:], start=1):
        is_total = index == len(lines) - 1
        for column, value in enumerate(line):
            name = FIGURES[column - 2] if column >= 2 else ""
            style = total if is_total else (
                percent if name in RATIOS else seconds if name.endswith("_s") else None)
            sheet.write(index, column, value, style)
    sheet.freeze_panes(1, 2)
    sheet.set_column(0, 1, 20)
    sheet.set_column(2, len(lines[0]) - 1, 14)
    sheet.set_row(0, 45)
    book.close()
    return buffer.getvalue()
