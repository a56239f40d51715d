"""What the published plans achieved: incremental retention against the holdout (`retention impact`).

The holdout (a stable hash of customer_id, never contacted) is the randomised control. The headline estimand is
intent-to-treat: churn over the horizon among every customer-day the policy decided on (contacted or not) against
the holdout. Comparing only the contacted with the holdout would flatter or punish the plans by whom they chose to
contact, not by what the contact did. Eligible: not suppressed (opt-outs, whichever arm), as recorded in `outcomes`.
Customers in cooldown or at the fatigue cap count: only the policy's earlier contacts put a customer there, and a
holdout customer is labelled `holdout` first, so dropping them would remove high-risk customer-days from the policy
arm alone (on a 30-day demo of IBM Telco that made a +3.6-point lift out of a true one of about 0.1 points).

Segments: `all` (the headline), `channel=`, `risk_decile=` (churn_risk over the window's eligible rows) and `week=`
are pre-treatment splits of both arms, so each is a randomised comparison too. `offer_level=` is not: holdout
customers have no offer level, so the contacted at that level are compared with the holdout reweighted to their
churn_risk deciles (like with like on risk, still selected on everything else); read them as descriptive.

Intervals: a 95 % percentile bootstrap that resamples customers, not rows, within each arm (a customer is planned
every day, and the holdout is the same customers all window long), N_BOOT replicates with a fixed seed so a rerun
writes the same rows. p-value: two-sided, normal with the bootstrap standard error. Minimum detectable effect: the
lift found with 80 % power at 5 % two-sided at these sizes, (z_0.975 + z_0.8) x that standard error.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from retention.config import Config
from retention.deciding import rules
from retention.infra import bq

N_BOOT = 1000
"""Bootstrap replicates per segment."""
Z = stats.norm.ppf(0.975)
POWER_Z = stats.norm.ppf(0.80)
SHOWN = 5
"""Offending rows named in an error."""
HORIZON_DAYS = 30
"""Days after plan_date over which `outcomes` counts a churn (outcomes.HORIZON_DAYS, the simulator's RISK_DAYS; not
imported from there: the daily DAG's report must not load the simulator). The daily report's window ends this long
before its ds: the newest plan day whose outcomes can be complete."""
MIN_CUSTOMERS = 10
"""Fewest customers in each arm for an interval: the bootstrap resamples customers, and a handful cannot say how
much a lift would vary."""


class BadOutcomes(ValueError):
    """The window's outcomes cannot be compared: missing days or rows, duplicates, or a contacted holdout."""


# checks


def check(rows: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The sound rows of `rows` (sql/impact_outcomes.sql); BadOutcomes naming the offending rows if any is not."""
    days = pd.to_datetime(rows["plan_date"]).dt.date
    present = set(days[rows["has_outcome"].astype(bool)])
    window = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    problems = []
    if missing := [d.isoformat() for d in window if d not in present]:
        problems.append(f"no outcomes for plan_date {', '.join(missing)} (run `retention simulate-outcomes` or load "
                        "them)")
    problems += _named(rows, ~rows["has_outcome"].astype(bool) & days.isin(present),
                       "plan rows without an outcome")
    problems += _named(rows, rows["has_outcome"].astype(bool) & ~rows["in_plan"].astype(bool),
                       "outcomes of no plan row or of a suppressed customer")
    problems += _named(rows, rows.duplicated(["plan_date", "customer_id"], keep=False), "duplicated outcomes")
    holdout = rows["holdout"].fillna(False).astype(bool) | rows["plan_holdout"].fillna(False).astype(bool)
    contacted = rows["treated"].fillna(False).astype(bool) | rows["contact"].fillna(False).astype(bool)
    problems += _named(rows, holdout & contacted, "holdout customers who were contacted")
    if problems:
        raise BadOutcomes(f"outcomes of {start} .. {end} cannot be compared, nothing written: " + "; ".join(problems))
    return rows.reset_index(drop=True)


def _named(rows: pd.DataFrame, bad: pd.Series, what: str) -> list[str]:
    """One problem naming the first SHOWN offending (plan_date, customer_id), or none."""
    if not bad.any():
        return []
    keys = rows.loc[bad, ["plan_date", "customer_id"]].drop_duplicates()
    shown = ", ".join(f"({pd.Timestamp(d).date()}, {c})" for d, c in keys.head(SHOWN).itertuples(index=False))
    return [f"{int(bad.sum())} {what}: {shown}{' ...' if len(keys) > SHOWN else ''}"]


# estimates


def prepare(rows: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Sound rows with what the segments need: arm, risk decile, week, and each contact's realised cost."""
    rank = rows["churn_risk"].rank(method="first").to_numpy()
    treated = rows["treated"].astype(bool).to_numpy()
    accepted = rows["accepted"].fillna(False).astype(bool).to_numpy()
    value = rows["customer_value"].to_numpy(dtype=np.float64)
    messages = 1 + (rows["followup_days"].fillna(0).to_numpy() > 0)  # the follow-up counted whenever scheduled
    discount = np.where(accepted, value * rows["offer_pct"].fillna(0).to_numpy(dtype=np.float64), 0.0)
    cost = np.where(treated, discount + rules.message_costs(rows, cfg) * messages, 0.0)
    days = pd.to_datetime(rows["plan_date"])
    return rows.assign(policy=~rows["holdout"].astype(bool), churned=rows["churned"].astype(bool),
                       treated=treated, risk_decile=np.ceil(10 * rank / len(rows)).astype(int),
                       week=(days - pd.to_timedelta(days.dt.weekday, unit="D")).dt.date, cost=cost)


def lift_draws(arm: pd.DataFrame, control: pd.DataFrame, weight: np.ndarray, n_boot: int,
               rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) bootstrap replicates of churn_control - churn_treated, customers resampled with replacement within
    each arm; `weight`: each control row's weight (1 for a randomised comparison)."""
    def churn(frame: pd.DataFrame, w: np.ndarray) -> np.ndarray:
        per = pd.DataFrame({"c": frame["customer_id"].to_numpy(), "y": w * frame["churned"].to_numpy(), "w": w})
        per = per.groupby("c", sort=False)[["y", "w"]].sum().to_numpy()  # (customers, 2)
        k = rng.multinomial(len(per), np.full(len(per), 1 / len(per)), size=n_boot).astype(np.float64)
        sums = k @ per  # (n_boot, 2)
        return sums[:, 0] / np.maximum(sums[:, 1], 1e-12)  # a weight sum of 0: only zero-weight customers drawn
    return churn(control, weight) - churn(arm, np.ones(len(arm)))


def segment_row(name: str, arm: pd.DataFrame, control: pd.DataFrame, weight: np.ndarray, n_boot: int,
                rng: np.random.Generator) -> dict:
    """One impact row: the policy arm `arm` against the `control` rows weighted by `weight`."""
    row = {"segment": name, "treated": len(arm), "control": int((weight > 0).sum()), "cost": float(arm["cost"].sum())}
    if arm.empty or not (weight > 0).any():
        return row
    churn_t = float(arm["churned"].mean())
    churn_c = float(np.average(control["churned"].to_numpy(dtype=np.float64), weights=weight))
    lift = churn_c - churn_t
    incremental = lift * len(arm)
    # revenue kept: the customers kept at the arm's mean customer_value (a value-weighted gap would add its own noise)
    revenue = incremental * float(arm["customer_value"].mean())
    row |= {"churn_treated": churn_t, "churn_control": churn_c, "lift": lift, "incremental_customers": incremental,
            "incremental_revenue": revenue,
            "cost_per_incremental_customer": row["cost"] / incremental if incremental > 0 else None,
            "roi": (revenue - row["cost"]) / row["cost"] if row["cost"] > 0 else None}
    if min(arm["customer_id"].nunique(), control.loc[weight > 0, "customer_id"].nunique()) < MIN_CUSTOMERS:
        return row
    draws = lift_draws(arm, control, weight, n_boot, rng)
    se = float(draws.std(ddof=1))
    return row | {"lift_low": float(np.quantile(draws, 0.025)), "lift_high": float(np.quantile(draws, 0.975)),
                  "p_value": float(2 * stats.norm.sf(abs(lift) / se)) if se > 0 else float(lift == 0),
                  "min_detectable_effect": (Z + POWER_Z) * se}


def segments(rows: pd.DataFrame):
    """(name, arm, control, control weights) of every segment, `all` first."""
    control = rows[~rows["policy"]]
    yield "all", rows[rows["policy"]], control, np.ones(len(control))
    for column in ("channel", "risk_decile", "week"):
        for key, part in rows.groupby(column, sort=True):
            c = part[~part["policy"]]
            yield f"{column}={key}", part[part["policy"]], c, np.ones(len(c))
    for level, arm in rows[rows["treated"]].groupby("offer_level", sort=True):
        # the holdout reweighted to the contacted's risk deciles; deciles with no holdout row are left out
        share = arm["risk_decile"].value_counts()
        held = control["risk_decile"].value_counts()
        common = share.index.intersection(held.index)
        w = control["risk_decile"].map(share.reindex(common) / held.reindex(common)).fillna(0.0).to_numpy()
        yield f"offer_level={int(level)}", arm[arm["risk_decile"].isin(common)], control, w


def estimate(rows: pd.DataFrame, cfg: Config, start: dt.date, end: dt.date, n_boot: int = N_BOOT,
             seed: int = 0) -> pd.DataFrame:
    """The impact rows of the window [start, end] from its checked rows (`check`)."""
    rng = np.random.default_rng(seed)
    prepared = prepare(rows, cfg)
    out = pd.DataFrame([segment_row(name, arm, control, w, n_boot, rng)
                        for name, arm, control, w in segments(prepared)])
    return out.assign(window_start=start, window_end=end).reindex(columns=bq.columns("impact"))


def verdict(table: pd.DataFrame, horizon: int) -> str:
    """The headline in words: the ITT lift and its interval, or plainly that the sample is too small."""
    r = table.set_index("segment").loc["all"]
    if pd.isna(r["lift"]):
        return "no comparison: one of the arms is empty (no holdout or no policy customer-days)"
    if pd.isna(r["lift_low"]):
        return (f"too small to conclude: fewer than {MIN_CUSTOMERS} customers in an arm ({r['treated']:,} policy and "
                f"{r['control']:,} holdout customer-days), no interval")
    said = (f"intent-to-treat over {horizon} days: churn {r['churn_treated']:.2%} with the plans vs "
            f"{r['churn_control']:.2%} in the holdout; lift {100 * r['lift']:+.2f} points "
            f"(95 % interval {100 * r['lift_low']:+.2f} .. {100 * r['lift_high']:+.2f}, p = {r['p_value']:.3g})")
    if r["lift_low"] <= 0 <= r["lift_high"]:
        said += (f"\ntoo small to conclude: the interval includes 0; with {r['treated']:,} policy and "
                 f"{r['control']:,} holdout customer-days only a lift of {100 * r['min_detectable_effect']:.2f} "
                 "points or more would be detected (80 % power)")
    return said


# pictures


def qini(rows: pd.DataFrame) -> pd.DataFrame:
    """Qini curve of the churn_risk ranking: rows by churn_risk, highest first; at each cut, retained customers in the
    policy arm less the holdout's retained scaled to the policy arm's size."""
    ranked = rows.sort_values("churn_risk", ascending=False, kind="stable")
    policy = ranked["policy"].to_numpy(dtype=bool)
    kept = ~ranked["churned"].to_numpy(dtype=bool)
    n_t, n_c = np.cumsum(policy), np.cumsum(~policy)
    r_t, r_c = np.cumsum(kept & policy), np.cumsum(kept & ~policy)
    gain = r_t - np.divide(r_c * n_t, n_c, out=np.zeros(len(ranked)), where=n_c > 0)
    return pd.DataFrame({"fraction": np.arange(1, len(ranked) + 1) / len(ranked), "qini": gain})


def plot(rows: pd.DataFrame, table: pd.DataFrame, folder: Path, title: str) -> list[Path]:
    """The Qini curve and the weekly lift chart as PNGs in `folder`; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    curve = qini(rows)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(np.r_[0, curve["fraction"]], np.r_[0, curve["qini"]], label="ranked by churn_risk")
    ax.plot([0, 1], [0, curve["qini"].iloc[-1]], "--", color="grey", label="random ranking")
    ax.set(title=f"Qini curve, {title}", xlabel="share of eligible customer-days, highest churn_risk first",
           ylabel="incremental customers retained")
    ax.legend()
    fig.tight_layout()
    paths = [folder / "qini.png"]
    fig.savefig(paths[0], dpi=100)
    weeks = table[table["segment"].str.startswith("week=")].dropna(subset=["lift"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = pd.to_datetime(weeks["segment"].str.removeprefix("week="))
    ax.errorbar(x, 100 * weeks["lift"], yerr=100 * np.vstack([weeks["lift"] - weeks["lift_low"],
                                                              weeks["lift_high"] - weeks["lift"]]),
                fmt="o-", capsize=4, label="lift, 95 % interval")
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(x, [d.strftime("%Y-%m-%d") for d in x])
    ax.set(title=f"Lift by week (intent-to-treat), {title}", xlabel="week of plan_date (Monday)",
           ylabel="churn points prevented (holdout - policy)")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    paths.append(folder / "lift_by_week.png")
    fig.savefig(paths[1], dpi=100)
    plt.close("all")
    return paths


# the window


def run(client, cfg: Config, start: dt.date, end: dt.date, n_boot: int = N_BOOT,
        seed: int = 0) -> tuple[pd.DataFrame, str, list[Path]]:
    """Check the window's outcomes, estimate, replace the window's `impact` rows, draw the pictures.

    Returns the impact rows, the verdict and the picture paths. BadOutcomes before anything is written.
    """
    for table in ("outcomes", "impact"):
        client.create_table(bq.table_spec(cfg, table), exists_ok=True, retry=bq.RETRY)
    rows = check(bq.query(client, cfg, bq.sql_text("impact_outcomes", cfg), start=start, end=end), start, end)
    impact = estimate(rows, cfg, start, end, n_boot, seed)
    bq.replace_partition(client, cfg, impact, "impact", "window_start", start, extra_key={"window_end": end})
    horizon = int(rows["horizon_days"].max())
    folder = cfg.artifacts / "reports" / "impact" / f"{start}_{end}"
    paths = plot(prepare(rows, cfg), impact, folder, f"{start} .. {end}")
    return impact, verdict(impact, horizon), paths


def daily_window(client, cfg: Config, ds: dt.date) -> tuple[dt.date, dt.date] | None:
    """The window the daily DAG reports on ds: cfg.impact_window_days ending HORIZON_DAYS before ds, started at its
    first day with outcomes (the product's outcomes may begin inside it); None when it has no outcomes yet."""
    end = ds - dt.timedelta(days=HORIZON_DAYS)
    start = end - dt.timedelta(days=cfg.impact_window_days - 1)
    client.create_table(bq.table_spec(cfg, "outcomes"), exists_ok=True, retry=bq.RETRY)
    days = bq.query(client, cfg, bq.sql_text("impact_outcome_days", cfg), start=start, end=end)
    return None if days.empty else (pd.Timestamp(days["plan_date"].min()).date(), end)


def pictures(cfg: Config, end: dt.date) -> list[Path]:
    """The Qini and weekly-lift PNGs of the reports whose window ends on `end` (what `retention summary` links)."""
    return sorted((cfg.artifacts / "reports" / "impact").glob(f"*_{end}/*.png"))
