"""send_at: when each contacted customer's message goes out, the first moment of ds outside their quiet hours.

Quiet hours are the configured ones (default 22:00-08:00 local) and, for channels that reach a person at once,
stricter ones on top (CHANNEL_QUIET_HOURS): a text or a call waits until both windows are over.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

CHANNEL_QUIET_HOURS = {"sms": (21, 9), "phone": (21, 9)}
"""Local quiet hours [start, end) per channel, kept as well as the configured ones: texts and calls interrupt."""


def in_quiet_hours(hour, start: int, end: int):
    """True where the local `hour` (an int or an array) falls in the quiet hours [start, end), which wrap midnight
    when start > end (none if equal)."""
    hour = np.asarray(hour)
    return (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)


def day_start(quiet_start: int, quiet_end: int, channel_hours: tuple[int, int] | None = None) -> int:
    """The local hour a channel's sending day starts: the later end of the configured and the channel's windows.

    A ValueError when that hour is itself quiet in either window (the two leave nothing of the morning).
    """
    windows = [(quiet_start, quiet_end)] + ([channel_hours] if channel_hours else [])
    hour = max(end for _, end in windows)
    if any(in_quiet_hours(hour, start, end) for start, end in windows):
        raise ValueError(f"quiet hours {windows} leave no send time: {hour}:00 is quiet in one of them")
    return hour


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


def send_at(plan: pd.DataFrame, ds, quiet_start: int, quiet_end: int, window_hour: int = 0,
            channel_hours: Mapping[str, tuple[int, int]] = CHANNEL_QUIET_HOURS) -> pd.Series:
    """UTC send time of each contacted row (NaT elsewhere): the first instant at or after the day's send window
    opens (ds at window_hour:00 UTC) that is outside the quiet hours of the config and of the row's channel in the
    customer's own zone.

    Never before the window (so never before the plan exists), never inside quiet hours, never a wall time that
    does not exist (a DST gap: the instant the clock jumps) or repeats (the first of the two). The time depends only
    on the zone and the channel, so it is computed once per distinct pair (few) and spread to the rows (many).
    """
    day = pd.Timestamp(ds).date()
    opens = datetime.combine(day, time(window_hour), tzinfo=UTC)
    contact = plan["contact"].to_numpy(dtype=bool)
    rows = plan.loc[contact, ["customer_id", "time_zone", "channel"]]  # not every column of a wide plan
    zones = _zones(rows)
    zone_code, zone_names = pd.factorize(rows["time_zone"])
    channel_code, channels = pd.factorize(rows["channel"])
    windows = [[(quiet_start, quiet_end)] + ([channel_hours[c]] if c in channel_hours else []) for c in channels]
    windows.append([(quiet_start, quiet_end)])  # code -1 (a null channel): the configured hours alone
    utc = [[first_allowed(zones[z], opens, w).replace(tzinfo=None) for w in windows] for z in zone_names]
    table = np.array(utc, dtype="datetime64[us]").reshape(len(zone_names), len(windows))  # (zones, channels + 1)
    at = np.full(len(plan), np.datetime64("NaT"), dtype="datetime64[us]")
    at[contact] = table[zone_code, channel_code]
    return pd.Series(pd.DatetimeIndex(at).tz_localize(UTC), index=plan.index)


def first_allowed(zone: ZoneInfo, opens: datetime, windows: list[tuple[int, int]]) -> datetime:
    """The first instant at or after `opens` (UTC) whose local hour in `zone` is in none of the quiet `windows`."""
    start_hour = day_start(*windows[0], windows[1] if len(windows) > 1 else None)
    local = opens.astimezone(zone)
    if not any(in_quiet_hours(local.hour, s, e) for s, e in windows):
        return opens
    # quiet now: the sending day starts at start_hour, today if that is still ahead locally, else tomorrow
    day = local.date() if local.hour < start_hour else local.date() + timedelta(days=1)
    return max(first_send(zone, day, start_hour), opens)
