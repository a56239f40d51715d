"""send_at: the first instant at or after the day's send window that is outside the quiet hours of each customer's
own zone and channel, across DST gaps, repeated hours and half-hour (and 45-minute) zones, with exact instants.

`first_send` (a wall time of a local day as an instant) carries the DST cases; `send_at` adds the window."""
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pandas as pd
import pytest

from retention.messages.schedule import CHANNEL_QUIET_HOURS, day_start, first_allowed, first_send, in_quiet_hours, send_at


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
    day = date.fromisoformat(ds)
    assert pd.Timestamp(first_send(ZoneInfo("America/New_York"), day, quiet_end)) == _utc(expected)[0]


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
    assert pd.Timestamp(first_send(ZoneInfo(zone), date.fromisoformat(ds), quiet_end)) == _utc(expected)[0]


@pytest.mark.parametrize("zone, ds, channel, window, expected", [
    ("America/New_York", "2025-03-09", "email", 6, "2025-03-09 12:00"),   # window 01:00 EST, quiet: 08:00 EDT
    ("America/New_York", "2025-03-09", "app", 6, "2025-03-09 12:00"),
    ("America/New_York", "2025-03-09", "sms", 6, "2025-03-09 13:00"),     # texts wait for 09:00 EDT
    ("America/New_York", "2025-11-02", "phone", 6, "2025-11-02 14:00"),   # calls too: 09:00 EST
    ("Asia/Kolkata", "2025-06-01", "sms", 6, "2025-06-01 06:00"),         # 11:30 IST: the window itself
    ("Asia/Kolkata", "2025-06-01", "email", 0, "2025-06-01 02:30"),       # 05:30 IST is quiet: 08:00 IST
    ("America/St_Johns", "2025-03-09", "sms", 6, "2025-03-09 11:30"),     # 09:00 NDT, the day DST began
    ("Pacific/Chatham", "2025-06-15", "email", 6, "2025-06-15 06:00"),    # 18:45 +12:45: never the day before
    ("Pacific/Chatham", "2025-09-28", "phone", 6, "2025-09-28 06:00"),    # 19:45 +13:45, before the texts' 21:00
    ("Pacific/Kiritimati", "2025-06-01", "email", 9, "2025-06-01 18:00"),  # 23:00 +14 is quiet: 08:00 next day
    ("Pacific/Kiritimati", "2025-06-01", "sms", 7, "2025-06-01 19:00"),   # 21:00 is quiet for texts: 09:00
    ("Pacific/Honolulu", "2025-06-01", "email", 6, "2025-06-01 06:00"),   # 20:00 the evening before, locally
])
def test_send_window_then_quiet_hours(zone, ds, channel, window, expected):
    assert CHANNEL_QUIET_HOURS["sms"] == (21, 9) and CHANNEL_QUIET_HOURS["phone"] == (21, 9)
    assert send_at(_plan([zone], channel=channel), ds, 22, 8, window).tolist() == _utc(expected)


def test_channel_hours_are_a_parameter_and_unknown_channels_keep_the_default():
    plan = _plan(["UTC"] * 3)
    plan["channel"] = ["sms", "email", "carrier_pigeon"]
    assert send_at(plan, "2025-01-01", 22, 8, 6, channel_hours={}).tolist() == _utc(*["2025-01-01 08:00"] * 3)
    assert send_at(plan, "2025-01-01", 22, 8, 6, channel_hours={"email": (20, 10)}).tolist() == _utc(
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
    out = send_at(plan, "2025-03-09", 22, 8, 6)
    assert out.tolist()[:2] == _utc("2025-03-09 06:00", "2025-03-09 12:00")
    assert pd.isna(out[2]) and out[3] == out[0]
    assert str(out.dtype) == "datetime64[us, UTC]" and out.index.equals(plan.index)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", None, "../etc/passwd"])
def test_unknown_zone_names_the_customer(zone):
    plan = _plan(["UTC", zone])
    with pytest.raises(ValueError, match=r"customer_id='c1'.*time_zone"):
        send_at(plan, "2025-03-09", 22, 8)
    plan["contact"] = [True, False]  # a zone nobody is sent to does not matter
    assert send_at(plan, "2025-03-09", 22, 8).notna().tolist() == [True, False]


def test_every_send_is_the_first_moment_outside_quiet_hours_after_the_window():
    """Every IANA zone, days across DST changes: at or after the window, outside both quiet windows locally, and
    the first such instant (one second earlier is before the window or quiet)."""
    rng = np.random.default_rng(0)
    zones = sorted(available_timezones())
    days = [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 365, 12)]
    days += [date(2025, 3, 9), date(2025, 3, 30), date(2025, 10, 5), date(2025, 10, 26), date(2025, 11, 2)]
    for day, channel in zip(days, ["email", "sms", "phone", "app"] * 5):
        quiet_start, quiet_end, window = int(rng.integers(18, 24)), int(rng.integers(0, 10)), int(rng.integers(0, 24))
        windows = [(quiet_start, quiet_end)] + ([CHANNEL_QUIET_HOURS[channel]] if channel in CHANNEL_QUIET_HOURS else [])
        opens = datetime.combine(day, time(window), tzinfo=ZoneInfo("UTC"))
        out = send_at(_plan(zones, channel=channel), day.isoformat(), quiet_start, quiet_end, window)
        for name, at in zip(zones, out.dt.to_pydatetime()):
            quiet = lambda instant: any(in_quiet_hours(instant.astimezone(ZoneInfo(name)).hour, s, e) for s, e in windows)
            assert at >= opens and not quiet(at), (name, day, channel)
            assert at == opens or quiet(at - timedelta(seconds=1)), (name, day, channel)
            assert at - opens < timedelta(hours=27), (name, day)  # the next local morning at the latest


def test_first_allowed_never_returns_a_wall_time_that_does_not_exist():
    # Havana springs forward at 00:00 -> 01:00: with quiet hours ending at 00:00 the send is the jump itself
    at = first_allowed(ZoneInfo("America/Havana"), datetime(2025, 3, 9, 1, tzinfo=ZoneInfo("UTC")), [(20, 0)])
    assert at == datetime(2025, 3, 9, 5, tzinfo=ZoneInfo("UTC"))


def test_first_send_matches_pandas_shift_forward_in_gaps():
    zone = ZoneInfo("America/New_York")
    gap = pd.Timestamp("2025-03-09 02:00").tz_localize("America/New_York", nonexistent="shift_forward")
    assert pd.Timestamp(first_send(zone, date(2025, 3, 9), 2)) == gap.tz_convert("UTC")
