"""Figures from summed measures (METRICS.md), schedule periods, and the exports."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from omnicc.core.errors import InvalidConfiguration
from omnicc.reports.exports import report_csv, report_xlsx
from omnicc.reports.fold import empty_totals
from omnicc.reports.queries import FIGURES, Report, ReportRequest, ReportRow, figures
from omnicc.reports.schedules import compose_report, periods_due

HELSINKI = ZoneInfo("Europe/Helsinki")


def totals(**values: float) -> dict[str, float]:
    return {**empty_totals(), **values}


def test_figures_follow_the_metrics_definitions() -> None:
    got = figures(totals(offered=100, handled=80, handled_within_threshold=60, abandoned=20,
                         abandoned_after_threshold=10, wait_s=800, talk_s=8000, hold_s=800,
                         wrap_s=1600, fcr_contacts=70, fcr_repeats=7, csat_answers=10,
                         csat_good=8, available_s=1000, handling_s=3000, logged_in_s=5000))
    assert got["service_level_sl1"] == 60 / 80
    assert got["service_level_sl2"] == 60 / (80 + 10)
    assert got["service_level_sl3"] == 60 / 100
    assert got["abandonment_rate"] == 0.2
    assert got["asa_s"] == 10.0 and got["aht_s"] == (8000 + 800 + 1600) / 80
    assert got["fcr_rate"] == pytest.approx(0.9) and got["csat"] == 0.8
    assert got["occupancy"] == 0.75 and got["utilisation"] == 0.6
    assert set(got) == set(FIGURES)


def test_figures_without_a_denominator_are_none() -> None:
    got = figures(empty_totals())
    assert got["asa_s"] is None and got["service_level_sl2"] is None and got["offered"] == 0


def test_a_request_is_checked() -> None:
    with pytest.raises(InvalidConfiguration, match="grain"):
        ReportRequest(start=date(2026, 1, 1), end=date(2026, 1, 1), grain="year")
    with pytest.raises(InvalidConfiguration, match="before start"):
        ReportRequest(start=date(2026, 1, 2), end=date(2026, 1, 1))
    with pytest.raises(InvalidConfiguration, match="at most 31 days"):
        ReportRequest(start=date(2026, 1, 1), end=date(2026, 3, 1), grain="15min")
    with pytest.raises(InvalidConfiguration, match="2000"):
        ReportRequest(start=date(1999, 12, 31), end=date(2000, 1, 1))


def test_periods_are_due_an_hour_after_they_end_in_the_tenant_zone() -> None:
    first = date(2026, 11, 23)  # a Monday
    at = datetime(2026, 11, 24, 0, 59, tzinfo=HELSINKI)
    assert periods_due("daily", first, at, HELSINKI) == []
    assert periods_due("daily", first, at.replace(minute=0, hour=1), HELSINKI) == [first]
    week_end = datetime(2026, 12, 1, 1, 0, tzinfo=HELSINKI)
    assert periods_due("weekly", date(2026, 11, 25), week_end, HELSINKI) == [first]
    assert periods_due("daily", first, week_end, HELSINKI)[-1] == date(2026, 11, 30)


def report() -> Report:
    request = ReportRequest(start=date(2026, 11, 23), end=date(2026, 11, 23), grain="day",
                            dimension="queue")
    row = totals(offered=3, handled=2, handled_within_threshold=2, abandoned=1)
    whole = dict(row)
    return Report(request=request, timezone="Europe/Helsinki",
                  rows=[ReportRow("2026-11-23", "q1", row, figures(row))],
                  total=ReportRow("", "", whole, figures(whole)))


def test_csv_and_xlsx_have_a_header_the_rows_and_the_total() -> None:
    lines = list(csv.reader(io.StringIO(report_csv(report(), {"q1": "Support, tier 1"}))))
    assert lines[0][:4] == ["Period", "Queue", "Offered", "Handled"]
    assert lines[1][:4] == ["2026-11-23", "Support, tier 1", "3", "2"]
    assert lines[2][0] == "Total" and lines[2][2] == "3"
    book = zipfile.ZipFile(io.BytesIO(report_xlsx(report(), {"q1": "Support"})))
    assert "Support" in book.read("xl/sharedStrings.xml").decode()


def test_exports_keep_typed_names_as_text() -> None:
    names = {"q1": "=HYPERLINK(\"http://x\")"}
    lines = list(csv.reader(io.StringIO(report_csv(report(), names))))
    assert lines[1][1] == "'=HYPERLINK(\"http://x\")"
    assert report_xlsx(report(), names, title="Daily [queues]: a/b?")  # a valid sheet name
    sheet = zipfile.ZipFile(io.BytesIO(report_xlsx(report(), names))).read(
        "xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet


def test_the_email_has_a_summary_and_the_workbook() -> None:
    message = compose_report("Daily", report(), {"q1": "Support"}, sender="cc@example.com",
                             recipients=["a@example.com"], message_id="<x@y>",
                             now=datetime(2026, 11, 24, 2, tzinfo=UTC))
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Support" in text and "66.7%" not in text and "100.0%" in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "report-2026-11-23.xlsx"
