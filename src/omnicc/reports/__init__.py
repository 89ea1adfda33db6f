"""Historical reports: the event log folded into per-contact rows, agent status periods and
15-minute and daily totals (`builder`), read back per interval, day, week or month and per
queue, channel, agent, team, disposition or segment (`queries`), exported (`exports`) and
emailed on a schedule (`schedules`).

The read side only: nothing here changes live state (ARCHITECTURE.md rule 4). Every figure
follows ../shared/METRICS.md.
"""
