"""Seed data for a day `ds`: Telco (or synthetic) customers, a contact history and a suppression list.

Pure functions: DataFrames and parameters in, DataFrames out; loading into BigQuery is the caller's job.
Attributes of a customer that are not in Telco (name, time zone, channel) come from a keyed hash of
customer_id, so a customer keeps them on every day and in any row order. Random draws come from
`seed_rng(ds, seed)`, so a rerun for the same day gives the same rows.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from retention.datasets.telco import FLAGS
from retention.hashing import keyed_hash

CUSTOMER_COLUMNS = (
    "snapshot_date", "customer_id", "name", "time_zone", "channel", "gender", "tenure_months", "plan",
    "contract", "payment_method", "monthly_charges", "total_charges", *FLAGS.values(), "customer_value",
)
"""sql/schema/customers.json, in order."""
HISTORY_COLUMNS = ("contact_date", "customer_id", "plan_date", "offer_level", "accepted", "churned", "sequence")
"""sql/schema/contact_history.json, in order."""
SUPPRESSION_COLUMNS = ("customer_id", "reason", "since")
"""sql/schema/suppression.json, in order."""

FEMALE_NAMES = (
    "Maria Emma Olivia Ava Sophia Isabella Mia Charlotte Amelia Harper Evelyn Abigail Emily Elizabeth Sofia "
    "Avery Ella Scarlett Grace Chloe Camila Penelope Layla Riley Zoey Nora Lily Eleanor Hannah Lillian Aaliyah "
    "Imani Keisha Latoya Jasmine Ebony Tanisha Nia Aisha Fatima Mariam Leila Yasmin Noor Zainab Amara Chiamaka "
    "Ngozi Adaeze Folake Priya Ananya Deepika Kavya Lakshmi Sunita Meera Anjali Mei Xiu Lan Yuki Sakura Haruka "
    "Ji-woo Min-seo Seo-yeon Linh Thu Mai Guadalupe Ximena Valentina Lucía Carmen Rosa Alejandra Daniela "
    "Gabriela Paola Ingrid Astrid Freya Sigrid Aoife Siobhan Niamh Katarzyna Agnieszka Olga Irina Svetlana "
    "Anastasia Elena Giulia Francesca Chiara Amélie Margaux Renée"
).split()
MALE_NAMES = (
    "James Michael Robert John David William Richard Joseph Thomas Christopher Daniel Matthew Anthony Mark "
    "Andrew Joshua Kevin Brian Ryan Ethan Liam Noah Lucas Mason Logan Owen Caleb Wyatt Hunter Connor DeShawn "
    "Jamal Tyrone Darnell Malik Terrell Andre Marcus Xavier Jalen Mohammed Ahmed Omar Yusuf Hassan Karim Tariq "
    "Ali Mustafa Ibrahim Chinedu Emeka Oluwaseun Kwame Kofi Tunde Sipho Thabo Jabari Babajide Arjun Rahul "
    "Vikram Sanjay Rohan Aditya Ravi Amit Wei Jun Hiroshi Kenji Takumi Min-jun Ji-ho Minh Tuan Bao José Juan "
    "Carlos Luis Miguel Diego Santiago Mateo Alejandro Javier Björn Lars Sean Cian Declan Piotr Tomasz Dmitri "
    "Sergei Giovanni Luca Étienne"
).split()
"""100 + 100 first names from many cultures; the customer's gender picks the list."""

TIME_ZONES = {
    "America/New_York": 0.42, "America/Chicago": 0.25, "America/Denver": 0.05, "America/Los_Angeles": 0.15,
    "America/Phoenix": 0.03, "America/Anchorage": 0.01, "Pacific/Honolulu": 0.01,
    "Europe/London": 0.02, "Europe/Berlin": 0.01, "Asia/Tokyo": 0.01,
    "Asia/Kolkata": 0.02, "America/St_Johns": 0.01, "Australia/Adelaide": 0.01,
}
"""Share of customers per IANA zone: mostly US zones with DST, plus Phoenix (no DST), Hawaii (UTC-10),
Kolkata (UTC+5:30), St John's (-3:30 with DST) and Adelaide (+9:30 with southern DST) to test quiet hours."""
CHANNEL_SHARES = {"email": 0.45, "sms": 0.25, "app": 0.18, "phone": 0.12}
"""Preferred contact channel mix over config.CHANNELS (the order fixes who gets which: keep it)."""

# Hash keys (16 bytes each, as pandas' SipHash wants) keep the three picks independent of each other.
NAME_KEY, ZONE_KEY, CHANNEL_KEY = "retention-name-1", "retention-zone-1", "retention-chan-1"

HISTORY_DAYS = 60
"""History covers the days ds-60 .. ds-1."""
OUTCOME_DAYS = 30
"""Whether a contacted customer churned is known only this many days after the contact."""
SEGMENTS = (  # (share of customers, contacts each, oldest and newest day before ds)
    (0.08, 1, 30, 60),  # lapsed: one contact outside the fatigue window
    (0.02, 2, 30, 60),
    (0.06, 1, 7, 29),   # inside the window, past the cooldown
    (0.03, 2, 7, 29),   # one contact short of the fatigue cap
    (0.06, 1, 1, 6),    # inside the 7-day cooldown
    (0.03, 3, 1, 29),   # at the fatigue cap (3 in 30 days); about half also inside the cooldown
    (0.02, 4, 1, 60),   # frequent contacts over two months
)
"""How the ~30 % of customers with a history were contacted; the other ~70 % never were."""
OFFER_SHARES = (0.30, 0.30, 0.25, 0.15)
"""How often past contacts carried offer level 0..3."""
ACCEPT_BY_LEVEL = (0.05, 0.12, 0.20, 0.28)
"""P(accepted | offer level) of a past contact."""
CHURN_BY_CONTRACT = {"month_to_month": 0.30, "one_year": 0.10, "two_year": 0.03}
"""P(churned after a contact | contract) for an offer not accepted; an accepted offer halves it."""

SUPPRESSION_SHARE = 0.01
SUPPRESSION_REASONS = {"opt_out": 0.75, "complaint": 0.15, "legal": 0.10}
SUPPRESSION_MAX_DAYS = 730
"""A suppression started 1..730 days before ds."""

HISTORY_STREAM, SUPPRESSION_STREAM, SYNTHETIC_STREAM = 1, 2, 3
TENURE_BANDS = (12, 24, 48)
"""Upper edges of the tenure bands (months) that synthetic flags are conditioned on, with the plan."""
SERVICE_FLAGS = ("phone_service", "multiple_lines", "online_security", "online_backup", "device_protection",
                 "tech_support", "streaming_tv", "streaming_movies")
"""The flags that are priced: Telco monthly charges are a plan base plus these add-ons."""


def seed_rng(ds: dt.date, seed: int, stream: int = 0) -> np.random.Generator:
    """Generator for (ds, seed); `stream` separates the tables so their draws are independent."""
    return np.random.default_rng([seed, ds.toordinal(), stream])


def _weighted_pick(h: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """Map hashes to keys of `weights` with those shares (object array)."""
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53  # top 53 bits -> uniform [0, 1)
    cum = np.cumsum(list(weights.values()))
    cum /= cum[-1]
    return np.array(list(weights), dtype=object)[np.searchsorted(cum, u, side="right")]


def _first_names(ids: pd.Series, gender: pd.Series) -> np.ndarray:
    """A first name per customer from the list matching their gender, by hash of the id."""
    pick = keyed_hash(ids, NAME_KEY) % np.uint64(len(FEMALE_NAMES))
    female, male = np.array(FEMALE_NAMES, dtype=object), np.array(MALE_NAMES, dtype=object)
    return np.where(gender.to_numpy() == "Female", female[pick], male[pick])


def _dates(ds: dt.date, days_before: np.ndarray) -> np.ndarray:
    """datetime.date objects ds - days_before, via a small lookup table (no per-row date arithmetic)."""
    table = np.array([ds - dt.timedelta(days=int(d)) for d in range(int(days_before.max(initial=0)) + 1)],
                     dtype=object)
    return table[days_before]


def _as_customers(core: pd.DataFrame, ds: dt.date) -> pd.DataFrame:
    """Telco-shaped rows plus snapshot_date, name, time_zone, channel, customer_value, in contract order."""
    ids = core["customer_id"]
    out = core.assign(
        snapshot_date=np.full(len(core), ds, dtype=object),
        name=_first_names(ids, core["gender"]),
        time_zone=_weighted_pick(keyed_hash(ids, ZONE_KEY), TIME_ZONES),
        channel=_weighted_pick(keyed_hash(ids, CHANNEL_KEY), CHANNEL_SHARES),
        customer_value=12.0 * core["monthly_charges"],
    )
    return out[list(CUSTOMER_COLUMNS)].reset_index(drop=True)


def customers_from_telco(telco: pd.DataFrame, ds: dt.date) -> pd.DataFrame:
    """The `customers` snapshot of ds from `read_telco` rows (the `churned` label is dropped)."""
    return _as_customers(telco.drop(columns="churned"), ds)


# contact history and suppression

def _distinct_days(rng: np.random.Generator, n: int, k: int, lo: int, hi: int) -> np.ndarray:
    """(n, k) distinct days in [lo, hi] per row: the first k of a random permutation of the range."""
    return np.argsort(rng.random((n, hi - lo + 1)), axis=1)[:, :k] + lo


def _contacts(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Customer positions and days before ds of every past contact, one entry per contact."""
    shares = [s for s, *_ in SEGMENTS]
    segment = rng.choice(len(SEGMENTS) + 1, size=n, p=[*shares, 1.0 - sum(shares)])
    rows, days = [], []
    for i, (_, k, lo, hi) in enumerate(SEGMENTS):
        members = np.flatnonzero(segment == i)
        rows.append(np.repeat(members, k))
        days.append(_distinct_days(rng, len(members), k, lo, hi).ravel())
    return np.concatenate(rows), np.concatenate(days)


def history_for(customers: pd.DataFrame, ds: dt.date, seed: int) -> pd.DataFrame:
    """`contact_history` rows of the 60 days before ds for `customers`, deterministic in (ds, seed)."""
    rng = seed_rng(ds, seed, HISTORY_STREAM)
    rows, days = _contacts(rng, len(customers))
    order = np.lexsort((rows, -days))  # by contact_date, then customer position
    rows, days = rows[order], days[order]

    level = rng.choice(len(OFFER_SHARES), size=len(rows), p=OFFER_SHARES)
    accepted = rng.random(len(rows)) < np.take(ACCEPT_BY_LEVEL, level)
    p_churn = customers["contract"].map(CHURN_BY_CONTRACT).to_numpy(dtype=np.float64)[rows]
    churned = rng.random(len(rows)) < np.where(accepted, 0.5 * p_churn, p_churn)
    contact_date = _dates(ds, days)
    return pd.DataFrame({
        "contact_date": contact_date,
        "customer_id": pd.Series(customers["customer_id"].to_numpy()[rows], dtype="str"),
        "plan_date": contact_date,
        "offer_level": level.astype(np.int64),
        "accepted": accepted,
        "churned": pd.arrays.BooleanArray(churned, mask=days < OUTCOME_DAYS),
        "sequence": np.zeros(len(rows), dtype=np.int64),  # each seeded contact is a first message
    })


def suppression_for(customers: pd.DataFrame, ds: dt.date, seed: int) -> pd.DataFrame:
    """`suppression` rows for about 1 % of `customers`, each starting before ds."""
    rng = seed_rng(ds, seed, SUPPRESSION_STREAM)
    rows = np.flatnonzero(rng.random(len(customers)) < SUPPRESSION_SHARE)
    reasons = np.array(list(SUPPRESSION_REASONS), dtype=object)
    pick = rng.choice(len(reasons), size=len(rows), p=list(SUPPRESSION_REASONS.values()))
    return pd.DataFrame({
        "customer_id": pd.Series(customers["customer_id"].to_numpy()[rows], dtype="str"),
        "reason": pd.Series(reasons[pick], dtype="str"),
        "since": _dates(ds, rng.integers(1, SUPPRESSION_MAX_DAYS + 1, size=len(rows))),
    })


# synthetic customers fitted to Telco

def _sample_flags(rng: np.random.Generator, telco: pd.DataFrame, donor: np.ndarray) -> dict:
    """The 12 flags by their Telco frequency given plan and tenure band; multiple lines only with a phone.

    Plan none has frequency 0 for every online flag; the tenure band keeps Telco's "long-standing customers
    buy more add-ons", which total_charges (tenure x monthly) depends on.
    """
    band = pd.Series(np.searchsorted(TENURE_BANDS, telco["tenure_months"].to_numpy()), index=telco.index)
    groups = telco.groupby([telco["plan"], band])
    p = groups[list(FLAGS.values())].mean()
    group = groups.ngroup().to_numpy()[donor]  # row of p for each synthetic customer
    flags = {f: rng.random(len(donor)) < p[f].to_numpy()[group] for f in p.columns}
    p_multi = (p["multiple_lines"] / p["phone_service"]).to_numpy()
    flags["multiple_lines"] = flags["phone_service"] & (rng.random(len(donor)) < p_multi[group])
    return flags


def _fit_monthly(telco: pd.DataFrame) -> tuple[pd.Series, np.ndarray, float]:
    """Least squares monthly = base(plan) + add-on prices; returns the bases, the prices, the residual sd."""
    plans = pd.get_dummies(telco["plan"], dtype=np.float64)
    x = np.column_stack([plans.to_numpy(), telco[list(SERVICE_FLAGS)].to_numpy(np.float64)])
    coef, *_ = np.linalg.lstsq(x, telco["monthly_charges"].to_numpy(), rcond=None)
    resid = telco["monthly_charges"].to_numpy() - x @ coef
    return pd.Series(coef[: plans.shape[1]], index=plans.columns), coef[plans.shape[1]:], float(resid.std())


def _sample_monthly(rng: np.random.Generator, telco: pd.DataFrame, donor: np.ndarray, flags: dict) -> np.ndarray:
    """Monthly charges from the fitted price list plus Telco-sized noise, kept in each plan's Telco range."""
    base, prices, sd = _fit_monthly(telco)
    plan = base.index.get_indexer(telco["plan"])[donor]
    monthly = base.to_numpy()[plan] + rng.normal(0.0, sd, size=len(donor))
    for f, price in zip(SERVICE_FLAGS, prices):
        monthly += price * flags[f]
    bounds = telco.groupby("plan")["monthly_charges"].agg(["min", "max"]).reindex(base.index)
    return np.clip(monthly, bounds["min"].to_numpy()[plan], bounds["max"].to_numpy()[plan]).round(2)


def _sample_total(rng: np.random.Generator, telco: pd.DataFrame, tenure: np.ndarray,
                  monthly: np.ndarray) -> np.ndarray:
    """tenure x monthly x a ratio drawn like Telco's total / (tenure x monthly) (prices change over time)."""
    billed = telco["tenure_months"] > 0
    ratio = telco["total_charges"][billed] / (telco["tenure_months"][billed] * telco["monthly_charges"][billed])
    noise = np.clip(rng.normal(ratio.mean(), ratio.std(), size=len(tenure)), ratio.min(), ratio.max())
    return (tenure * monthly * noise).round(2)


def synthetic_customers(n: int, ds: dt.date, seed: int, telco: pd.DataFrame, start: int = 0) -> pd.DataFrame:
    """n `customers` rows for ds with Telco's marginals, ids SYN-0000001.., vectorised for millions.

    `start` > 0 draws the block of ids SYN-<start + 1>.. from its own stream, so a population too large to hold is
    made block by block (a block of one start is the same every time).

    Gender, plan, contract, payment method and tenure are drawn together from random Telco rows (their
    empirical joint distribution); flags, monthly and total charges are then drawn from fitted frequencies,
    prices and noise. The population depends on `seed` only, so SYN-0000001 is the same customer every day.
    """
    rng = np.random.default_rng([seed, SYNTHETIC_STREAM] + ([start] if start else []))
    donor = rng.integers(len(telco), size=n)
    core = telco[["gender", "tenure_months", "plan", "contract", "payment_method"]].take(donor)
    core = core.reset_index(drop=True)
    ids = np.strings.add("SYN-", np.strings.zfill(np.arange(start + 1, start + n + 1).astype(np.dtypes.StringDType()), 7))
    flags = _sample_flags(rng, telco, donor)
    monthly = _sample_monthly(rng, telco, donor, flags)
    core = core.assign(
        customer_id=pd.Series(ids, dtype="str"),
        monthly_charges=monthly,
        total_charges=_sample_total(rng, telco, core["tenure_months"].to_numpy(), monthly),
        **flags,
    )
    return _as_customers(core, ds)
