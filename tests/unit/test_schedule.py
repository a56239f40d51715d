"""send_at: quiet-hours end in each customer's own zone and channel, across DST gaps, repeated hours and
half-hour (and 45-minute) zones, with exact expected instants."""
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pandas as pd
import pytest

from retention.messages.schedule import CHANNEL_QUIET_HOURS, day_start, first_send, in_quiet_hours, send_at


def _plan(zones, contact=None, channel="email") -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(zones))], "time_zone": zones,
                         "channel": channel, "contact": contact or [True] * len(zones)})


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
    ("Europe/London", "2025-10-26", 1, "2025-10-26 00:00"),       # 01:00 twice: the first, BST
    ("UTC", "2025-01-01", 8, "2025-01-01 08:00"),
    ("Asia/Kathmandu", "2025-06-01", 8, "2025-06-01 02:15"),      # +05:45
    ("Pacific/Chatham", "2025-01-15", 8, "2025-01-14 18:15"),     # +13:45 (summer)
    ("Pacific/Chatham", "2025-06-15", 8, "2025-06-14 19:15"),     # +12:45
    ("Pacific/Chatham", "2025-09-28", 3, "2025-09-27 14:00"),     # 02:45 -> 03:45: 03:00 skipped, the jump
    ("Australia/Adelaide", "2025-10-05", 2, "2025-10-04 16:30"),  # +09:30 -> +10:30 at 02:00: 03:00 ACDT
    ("Australia/Adelaide", "2025-04-06", 2, "2025-04-05 15:30"),  # 02:00 twice: the first, +10:30
    ("Australia/Lord_Howe", "2025-04-06", 1, "2025-04-05 14:00"),  # half-hour fall back: first 01:00, +11
    ("America/Havana", "2025-03-09", 0, "2025-03-09 05:00"),      # the gap is at midnight: 00:00 -> 01:00 CDT
    ("America/Havana", "2025-11-02", 0, "2025-11-02 04:00"),      # 00:00 twice: the first, CDT
])
def test_half_hour_and_other_zones(zone, ds, quiet_end, expected):
    assert send_at(_plan([zone]), ds, 22, quiet_end).tolist() == _utc(expected)


@pytest.mark.parametrize("zone, ds, channel, expected", [
    ("America/New_York", "2025-03-09", "email", "2025-03-09 12:00"),   # 08:00 EDT
    ("America/New_York", "2025-03-09", "app", "2025-03-09 12:00"),
    ("America/New_York", "2025-03-09", "sms", "2025-03-09 13:00"),     # texts wait for 09:00 EDT
    ("America/New_York", "2025-11-02", "phone", "2025-11-02 14:00"),   # calls too: 09:00 EST
    ("Asia/Kolkata", "2025-06-01", "sms", "2025-06-01 03:30"),         # 09:00 +05:30
    ("America/St_Johns", "2025-03-09", "sms", "2025-03-09 11:30"),     # 09:00 NDT, the day DST began
    ("Pacific/Chatham", "2025-09-28", "phone", "2025-09-27 19:15"),    # 09:00 +13:45, hours after the jump
])
def test_channels_with_stricter_quiet_hours(zone, ds, channel, expected):
    assert CHANNEL_QUIET_HOURS["sms"] == (21, 9) and CHANNEL_QUIET_HOURS["phone"] == (21, 9)
    assert send_at(_plan([zone], channel=channel), ds, 22, 8).tolist() == _utc(expected)


def test_channel_hours_are_a_parameter_and_unknown_channels_keep_the_default():
    plan = _plan(["UTC"] * 3)
    plan["channel"] = ["sms", "email", "carrier_pigeon"]
    assert send_at(plan, "2025-01-01", 22, 8, {}).tolist() == _utc(*["2025-01-01 08:00"] * 3)
    assert send_at(plan, "2025-01-01", 22, 8, {"email": (20, 10)}).tolist() == _utc(
        "2025-01-01 08:00", "2025-01-01 10:00", "2025-01-01 08:00")


def test_day_start_is_the_later_end_outside_both_windows():
    assert day_start(22, 8) == 8 and day_start(22, 8, (21, 9)) == 9 and day_start(23, 10, (21, 9)) == 10
    assert day_start(0, 6, (21, 9)) == 9  # a window that does not wrap midnight
    with pytest.raises(ValueError, match="no send time"):
        day_start(22, 8, (7, 6))  # quiet from 07:00 to 06:00 next day: nothing of the morning left
    assert [in_quiet_hours(h, 22, 8) for h in (21, 22, 23, 0, 7, 8)] == [False, True, True, True, True, False]
    assert not any(in_quiet_hours(h, 8, 8) for h in range(24))  # equal bounds: no quiet hours


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
    for day, channel in zip(days, ["email", "sms", "phone", "app"] * 5):
        quiet_start, quiet_end = int(rng.integers(18, 24)), int(rng.integers(0, 10))
        start = day_start(quiet_start, quiet_end, CHANNEL_QUIET_HOURS.get(channel))
        wall = datetime.combine(day, time(start))
        out = send_at(_plan(zones, channel=channel), day.isoformat(), quiet_start, quiet_end)
        for name, at in zip(zones, out.dt.to_pydatetime()):
            local = at.astimezone(ZoneInfo(name)).replace(tzinfo=None)
            before = (at - timedelta(seconds=1)).astimezone(ZoneInfo(name)).replace(tzinfo=None)
            assert local.date() == day, (name, day)
            assert not in_quiet_hours(local.hour, quiet_start, quiet_end), (name, day)
            assert not in_quiet_hours(local.hour, *CHANNEL_QUIET_HOURS.get(channel, (0, 0))), (name, day, channel)
            # the first such instant: one second earlier the clock still read before the day's start
            assert local >= wall and before < wall, (name, day)


def test_first_send_matches_pandas_shift_forward_in_gaps():
    zone = ZoneInfo("America/New_York")
    gap = pd.Timestamp("2025-03-09 02:00").tz_localize("America/New_York", nonexistent="shift_forward")
    assert pd.Timestamp(first_send(zone, date(2025, 3, 9), 2)) == gap.tz_convert("UTC")
