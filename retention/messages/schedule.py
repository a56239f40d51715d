"""send_at: when each contacted customer's message goes out, the first moment of ds outside their quiet hours."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd


def first_send(zone: ZoneInfo, day: date, quiet_end: int) -> datetime:
    """The first instant of `day` whose wall clock in `zone` reads quiet_end:00 or later, in UTC.

    Where that wall time happens twice (clocks set back), fold=0 is its first occurrence. Where it never happens
    (clocks set forward over it), the answer is the transition, the instant the clock jumps past it.
    """
    wall = datetime.combine(day, time(quiet_end))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # in a gap fold=0 reads the wall with the offset before the jump, fold=1 with the one after: the jump lies between
    return _transition(zone, wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first)


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first second in (before, after] whose UTC offset in `zone` differs from the one at `before` (bisection)."""
    offset = before.astimezone(zone).utcoffset()
    lo, hi = 0, int((after - before).total_seconds())  # offset at before + lo is the old one, at before + hi the new
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (before + timedelta(seconds=mid)).astimezone(zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return before + timedelta(seconds=hi)


def _zones(rows: pd.DataFrame) -> dict[str, ZoneInfo]:
    """The IANA zone of each distinct time_zone; a ValueError naming the first customer whose zone is not one."""
    zones = {}
    for name in rows["time_zone"].unique():
        try:
            zones[name] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as err:  # TypeError: a null field
            same = rows["time_zone"].isna() if pd.isna(name) else rows["time_zone"] == name
            customer_id = rows.loc[same, "customer_id"].iloc[0]
            raise ValueError(f"customer_id={customer_id!r}: field time_zone={name!r} is not an IANA time zone") from err
    return zones


def send_at(plan: pd.DataFrame, ds, quiet_start: int, quiet_end: int) -> pd.Series:
    """UTC send time of each contacted row (NaT elsewhere): quiet_end:00 local on ds, or the first instant after it.

    Quiet hours are [quiet_start, quiet_end) local, wrapping midnight when quiet_start > quiet_end; the day starts
    at their end, which is outside them whatever quiet_start is. The time depends only on the zone, so it is
    computed once per distinct zone (few) and spread to the rows (many).
    """
    day = pd.Timestamp(ds).date()
    contact = plan["contact"].to_numpy(dtype=bool)
    rows = plan.loc[contact]
    first = {name: first_send(zone, day, quiet_end) for name, zone in _zones(rows).items()}
    out = pd.Series(pd.NaT, index=plan.index, dtype="datetime64[us, UTC]")
    out.loc[contact] = pd.DatetimeIndex(rows["time_zone"].map(first), tz=UTC).as_unit("us")
    return out
