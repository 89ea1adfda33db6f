"""Workforce management: queueing mathematics, forecasting, staffing and schedules."""
