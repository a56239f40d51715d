"""send_at: quiet-hours end in each customer's own zone, across DST gaps, repeated hours and half-hour zones."""
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pandas as pd
import pytest

from retention.messages.schedule import first_send, send_at


def _plan(zones, contact=None) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(zones))], "time_zone": zones,
                         "contact": contact or [True] * len(zones)})


def _utc(*stamps) -> list:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


@pytest.mark.parametrize("ds, quiet_end, expected", [
    ("2025-03-08", 8, "2025-03-08 13:00"),  # EST, the day before the switch
    ("2025-03-09", 8, "2025-03-09 12:00"),  # EDT from 02:00 that morning
    ("2025-03-09", 2, "2025-03-09 07:00"),  # 02:00 never happens: the clock jumps to 03:00 EDT
    ("2025-03-09", 3, "2025-03-09 07:00"),  # 03:00 EDT, the same instant
    ("2025-11-01", 8, "2025-11-01 12:00"),  # EDT
    ("2025-11-02", 8, "2025-11-02 13:00"),  # EST from 02:00 EDT that morning
    ("2025-11-02", 1, "2025-11-02 05:00"),  # 01:00 happens twice: the first, EDT
    ("2025-11-02", 2, "2025-11-02 07:00"),  # 02:00 EST (02:00 EDT never shows)
])
def test_new_york_across_dst(ds, quiet_end, expected):
    assert send_at(_plan(["America/New_York"]), ds, 22, quiet_end).tolist() == _utc(expected)


@pytest.mark.parametrize("zone, ds, quiet_end, expected", [
    ("Asia/Kolkata", "2025-06-01", 8, "2025-06-01 02:30"),        # +05:30
    ("Asia/Kolkata", "2025-06-01", 2, "2025-05-31 20:30"),
    ("America/St_Johns", "2025-01-15", 8, "2025-01-15 11:30"),    # NST -03:30
    ("America/St_Johns", "2025-07-15", 8, "2025-07-15 10:30"),    # NDT -02:30
    ("America/St_Johns", "2025-03-09", 2, "2025-03-09 05:30"),    # 02:00 skipped: 03:00 NDT
    ("America/St_Johns", "2025-11-02", 1, "2025-11-02 03:30"),    # first 01:00, NDT
    ("Australia/Lord_Howe", "2025-10-05", 2, "2025-10-04 15:30"),  # a half-hour jump: 02:00 -> 02:30 +11
    ("Europe/Dublin", "2025-03-30", 1, "2025-03-30 01:00"),       # 01:00 skipped: 02:00 IST
    ("UTC", "2025-01-01", 8, "2025-01-01 08:00"),
])
def test_half_hour_and_other_zones(zone, ds, quiet_end, expected):
    assert send_at(_plan([zone]), ds, 22, quiet_end).tolist() == _utc(expected)


def test_rows_mix_zones_and_non_contacted_get_nat():
    plan = _plan(["Asia/Kolkata", "America/New_York", None, "Asia/Kolkata"], contact=[True, True, False, True])
    out = send_at(plan, "2025-03-09", 22, 8)
    assert out.tolist()[:2] == _utc("2025-03-09 02:30", "2025-03-09 12:00")
    assert pd.isna(out[2]) and out[3] == out[0]
    assert str(out.dtype) == "datetime64[us, UTC]" and out.index.equals(plan.index)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", None, "../etc/passwd"])
def test_unknown_zone_names_the_customer(zone):
    plan = _plan(["UTC", zone])
    with pytest.raises(ValueError, match=r"customer_id='c1'.*time_zone"):
        send_at(plan, "2025-03-09", 22, 8)
    plan["contact"] = [True, False]  # a zone nobody is sent to does not matter
    assert send_at(plan, "2025-03-09", 22, 8).notna().tolist() == [True, False]


def test_every_send_is_the_first_moment_outside_quiet_hours():
    rng = np.random.default_rng(0)
    zones = sorted(available_timezones())
    days = [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 365, 12)]
    days += [date(2025, 3, 9), date(2025, 3, 30), date(2025, 10, 5), date(2025, 10, 26), date(2025, 11, 2)]
    for day in days:
        quiet_start, quiet_end = int(rng.integers(18, 24)), int(rng.integers(0, 10))
        wall = datetime.combine(day, time(quiet_end))
        out = send_at(_plan(zones), day.isoformat(), quiet_start, quiet_end)
        for name, at in zip(zones, out.dt.to_pydatetime()):
            local = at.astimezone(ZoneInfo(name)).replace(tzinfo=None)
            before = (at - timedelta(seconds=1)).astimezone(ZoneInfo(name)).replace(tzinfo=None)
            assert local.date() == day, (name, day)
            assert not (local.hour >= quiet_start or local.hour < quiet_end), (name, day)
            # the first such instant: one second earlier the clock still read before quiet_end
            assert local >= wall and before < wall, (name, day)


def test_first_send_matches_pandas_shift_forward_in_gaps():
    zone = ZoneInfo("America/New_York")
    gap = pd.Timestamp("2025-03-09 02:00").tz_localize("America/New_York", nonexistent="shift_forward")
    assert pd.Timestamp(first_send(zone, date(2025, 3, 9), 2)) == gap.tz_convert("UTC")
