"""PPO with Lagrangian constraints for the daily contact decision, the way CleanRL writes PPO (one file, top to bottom).

The vectorised "envs" are the customers of the simulated cohort and a step is a day: each iteration lives the whole
cohort through one episode (`Simulator`), deciding every day's candidates with `decide_day` exactly as the daily
rollout does (masked, budget live), so the (T = days, N = customers) batch is on-policy for the deployed sampler.

Constraints: the masks make every taken action legal, so what the constraints govern is the policy's *unmasked*
intent: its probability of contacting a customer in the cooldown or at the fatigue cap, or of drawing an offer that
no longer fits the budget (the "violations before enforcement"). That mass J_c is an exact, differentiable function
of the logits and never changes the trajectory, so the Lagrangian L = J_r - sum_c lambda_c (J_c - limit_c) needs no
cost critic: the penalty enters the loss directly and each lambda_c follows dual ascent on the measured J_c, clamped
at zero, with optional P and D terms (PID Lagrangian, Stooke et al. 2020; omnisafe's pid_lagrange.py).

References: CleanRL ppo.py (https://github.com/vwxyzjn/cleanrl), invalid action masking (Huang & Ontanon 2020).
"""
from __future__ import annotations

import csv
import datetime as dt
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from tqdm import tqdm

from retention.deciding import rules
from retention.deciding.network import Agent
from retention.deciding.sampler import BUDGET, DELAYS, NOISE, OBS, candidate_order, decide_day, observe
from retention.simulation.simulator import Simulator

RULES = ("budget", "fatigue", "cooldown")


@dataclass
class PPOConfig:
    """Hyper-parameters of one training run (CleanRL names)."""

    iterations: int = 60
    """Episodes (the whole cohort over `horizon` days) collected and learned from."""
    horizon: int = 60
    """Simulated days per episode."""
    start: dt.date = dt.date(2026, 1, 5)
    """Episodes start on a random day of the year from here, so every month's acceptance is seen."""
    learning_rate: float = 1e-3
    """Adam step size, annealed linearly to 0 when anneal_lr."""
    anneal_lr: bool = True
    gamma: float = 0.95
    """Discount per day: about three weeks of consequences, longer than any cooldown or follow-up."""
    gae_lambda: float = 0.95
    update_epochs: int = 3
    """Passes over each episode's decisions."""
    minibatch_size: int = 4096
    clip_coef: float = 0.2
    """PPO ratio clip."""
    ent_coef: float = 0.003
    """Entropy bonus of the joint (masked) action."""
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.03
    """Stop an update's epochs early past this approximate KL."""
    reward_scale: float = 0.01
    """Currency units to reward units (a contact earns tens to hundreds)."""
    cost_limit: float = 0.002
    """Allowed unmasked violation probability per decision, per rule."""
    lambda_lr: float = 0.2
    """Dual-ascent step (the I gain of the PID Lagrangian)."""
    lambda_kp: float = 0.0
    """P gain; 0 is plain dual ascent (the multipliers settled without oscillating here)."""
    lambda_kd: float = 0.0
    """D gain on rising costs."""
    hidden: int = 128
    """Width of the shared trunk's two layers."""
    block: int = 1024
    """Candidates per forward pass; saved with the policy, the rollout uses the same."""
    forced_share: float = 0.1
    """Share of forced decisions (no legal contact) kept for the update, weighted back."""
    seed: int = 1
    threads: int = 1
    """Torch threads: the matrices are small and the machine is shared."""


def raw_costs(p_contact: torch.Tensor, p_offer: torch.Tensor, breaks: torch.Tensor, affordable: torch.Tensor):
    """(n, 3) unmasked probability of breaking each rule (budget, fatigue, cooldown) per decision.

    breaks (n, 2): the contact rules a contact would break, (fatigue cap, cooldown), as `rules` decides them.
    """
    budget = p_contact * (p_offer * (~affordable).float()).sum(dim=1)
    return torch.cat([budget[:, None], p_contact[:, None] * breaks.float()], dim=1)


def compute_gae(rewards, values, terminated, last_value, gamma: float, lam: float):
    """GAE over (T, N) arrays; terminated[t]: step t was the last (no bootstrap); last_value: V(s_T) for truncation."""
    advantages = np.zeros_like(rewards)
    lastgaelam = np.zeros_like(last_value)
    for t in reversed(range(len(rewards))):
        next_values = last_value if t == len(rewards) - 1 else values[t + 1]
        nonterminal = 1.0 - terminated[t]
        delta = rewards[t] + gamma * next_values * nonterminal - values[t]
        lastgaelam = delta + gamma * lam * nonterminal * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values


class Lagrange:
    """Multipliers updated from measured costs: dual ascent (ki), plus optional proportional and derivative terms."""

    def __init__(self, limit: float, ki: float, kp: float = 0.0, kd: float = 0.0, n: int = len(RULES)):
        self.limit, self.ki, self.kp, self.kd = limit, ki, kp, kd
        self.integral, self.previous, self.value = np.zeros(n), np.zeros(n), np.zeros(n)

    def update(self, costs: np.ndarray) -> np.ndarray:
        error = costs - self.limit
        self.integral = np.maximum(0.0, self.integral + self.ki * error)
        derivative = np.maximum(0.0, costs - self.previous)
        self.previous = costs
        self.value = np.maximum(0.0, self.integral + self.kp * error + self.kd * derivative)
        return self.value


def collect(sim: Simulator, agent: Agent, cfg: PPOConfig, seed: int, start: dt.date, rng: np.random.Generator) -> dict:
    """One episode of the whole cohort under the masked policy: (T, N) arrays for the update."""
    T, N = sim.horizon, len(sim.ids)
    sim.reset(seed, start)
    buf = {"obs": np.zeros((T, N, len(OBS)), np.float32), "action": np.zeros((T, N, 3), np.int64),
           "logp": np.zeros((T, N), np.float32), "contact_ok": np.zeros((T, N, 2), bool),
           "offer_ok": np.zeros((T, N, rules.LEVELS), bool), "affordable": np.zeros((T, N, rules.LEVELS), bool),
           "breaks": np.zeros((T, N, 2), bool),
           "valid": np.zeros((T, N), bool), "reward": np.zeros((T, N), np.float32),
           "terminated": np.zeros((T, N), np.float32)}
    stats = {"realized": 0.0, "expected": 0.0, "contacts": 0, "decisions": 0, "eligible": 0, "spend": 0.0,
             "level": np.zeros(rules.LEVELS), "delay": np.zeros(DELAYS)}

    def logits(obs: np.ndarray):
        with torch.inference_mode():
            return tuple(x.double().numpy() for x in agent.logits(torch.from_numpy(obs)))

    for t in range(T):
        rows = sim.candidates()
        risk, days_since, window = sim.risk()[rows], sim.days_since_contact()[rows], sim.contacts_in_window()[rows]
        order = candidate_order(risk, sim.value[rows])
        rows, risk, days_since, window = rows[order], risk[order], days_since[order], window[order]
        eligible = rules.contact_allowed(days_since, window, sim.cfg)
        accept = sim.accept_probs(rows)
        costs = sim.offer_costs(rows, accept)
        obs = observe(risk, accept, days_since, window, sim.cfg)
        d = decide_day(obs, costs, eligible, sim.cfg.daily_budget, rng.random((len(rows), NOISE)), logits,
                       cfg.block)
        buf["obs"][t, rows], buf["logp"][t, rows], buf["valid"][t, rows] = d.obs, d.logp, True
        buf["action"][t, rows] = np.stack([d.contact, d.level, d.delay], axis=1)
        buf["contact_ok"][t, rows], buf["affordable"][t, rows] = d.contact_ok, d.affordable
        buf["offer_ok"][t, rows] = eligible[:, None] & d.affordable
        buf["breaks"][t, rows] = np.stack([rules.at_fatigue_cap(window, sim.cfg),
                                           rules.cooldown_active(days_since, sim.cfg)], axis=1)
        out = sim.contact(rows[d.contact], d.level[d.contact], rules.followup_days(d.delay[d.contact], sim.cfg))
        follow, churned = sim.advance()
        buf["reward"][t] = (out.expected + follow.expected) * cfg.reward_scale
        buf["terminated"][t] = churned
        stats["realized"] += float(out.realized.sum() + follow.realized.sum())
        stats["expected"] += float(out.expected.sum() + follow.expected.sum())
        stats["contacts"] += int(d.contact.sum())
        stats["decisions"] += len(rows)
        stats["eligible"] += int(eligible.sum())
        stats["level"] += np.bincount(d.level[d.contact], minlength=rules.LEVELS)
        stats["delay"] += np.bincount(d.delay[d.contact], minlength=DELAYS)
        stats["spend"] += d.spent
    # truncation: bootstrap from the state after the last day (budget as the customer last saw it)
    last = buf["obs"][T - 1].copy()
    rows = sim.candidates()
    last[rows] = observe(sim.risk()[rows], sim.accept_probs(rows), sim.days_since_contact()[rows],
                         sim.contacts_in_window()[rows], sim.cfg)
    last[rows, BUDGET] = buf["obs"][T - 1, rows, BUDGET]
    buf["last_obs"], buf["last_alive"] = last, np.isin(np.arange(N), rows)
    buf["stats"] = stats
    return buf


def train(sim: Simulator | list[Simulator], cfg: PPOConfig, log_path: str | Path | None = None,
          progress: bool = True, agent: Agent | None = None) -> tuple[Agent, list[dict]]:
    """Train `agent` (a fresh one by default) on the simulator; returns it and one log row per iteration.

    Given several simulators (one per world), iteration i collects its episode in world i mod their number: domain
    randomisation, so the policy cannot lean on one world's effects. The log is also written to `log_path` as CSV
    after every iteration.
    """
    sims = sim if isinstance(sim, list) else [sim]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    agent = Agent(cfg.hidden) if agent is None else agent
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    lagrange = Lagrange(cfg.cost_limit, cfg.lambda_lr, cfg.lambda_kp, cfg.lambda_kd)
    history, started = [], time.perf_counter()
    bar = tqdm(range(1, cfg.iterations + 1), desc="ppo", disable=not progress)
    for iteration in bar:
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - (iteration - 1.0) / cfg.iterations)

        # rollout
        start = cfg.start + dt.timedelta(days=int(rng.integers(365)))
        sim = sims[(iteration - 1) % len(sims)]
        buf = collect(sim, agent, cfg, seed=cfg.seed * 100_003 + iteration, start=start, rng=rng)
        valid = buf["valid"]
        b = {k: torch.from_numpy(np.ascontiguousarray(buf[k][valid]))
             for k in ("obs", "action", "logp", "contact_ok", "offer_ok", "affordable", "breaks")}

        # value of every visited state and the measured constraint costs, in one pass
        with torch.inference_mode():
            _, _, value, pc, po = agent.evaluate(b["obs"], b["action"], b["contact_ok"], b["offer_ok"])
            measured = raw_costs(pc, po, b["breaks"], b["affordable"]).mean(dim=0).numpy()
            last_value = agent.get_value(torch.from_numpy(buf["last_obs"])).numpy() * buf["last_alive"]
        values = np.zeros(valid.shape, np.float32)
        values[valid] = value.numpy()

        # bootstrap value, GAE
        advantages, returns = compute_gae(buf["reward"], values, buf["terminated"], last_value, cfg.gamma,
                                          cfg.gae_lambda)
        b["adv"], b["ret"], b["val"] = (torch.from_numpy(x[valid]) for x in (advantages, returns, values))

        # multipliers: dual ascent on the measured costs, clamped at 0
        lam = torch.as_tensor(lagrange.update(measured), dtype=torch.float32)

        # update set: every decision with a choice, and a weighted sample of forced ones (no policy gradient there;
        # they teach the critic and carry the constraint costs)
        choice = b["contact_ok"][:, 1]
        keep = choice | torch.from_numpy(rng.random(len(choice)) < cfg.forced_share)
        b = {k: v[keep] for k, v in b.items()}
        b["choice"] = choice[keep].float()
        b["weight"] = torch.where(choice[keep], 1.0, 1.0 / cfg.forced_share)
        M = len(b["adv"])

        # policy and value update
        clipfracs, approx_kl = [], 0.0
        for epoch in range(cfg.update_epochs):
            perm = torch.randperm(M)
            for s in range(0, M, cfg.minibatch_size):
                mb = {k: v[perm[s:s + cfg.minibatch_size]] for k, v in b.items()}
                newlogp, entropy, newvalue, pc, po = agent.evaluate(mb["obs"], mb["action"], mb["contact_ok"],
                                                                    mb["offer_ok"])
                c, w, n_choice = mb["choice"], mb["weight"], mb["choice"].sum().clamp(min=1.0)
                logratio = newlogp - mb["logp"]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = float((((ratio - 1) - logratio) * c).sum() / n_choice)
                    clipfracs.append(float((((ratio - 1.0).abs() > cfg.clip_coef).float() * c).sum() / n_choice))
                adv_mean = (mb["adv"] * c).sum() / n_choice
                adv_std = (((mb["adv"] - adv_mean) ** 2 * c).sum() / n_choice).sqrt()
                mb_adv = (mb["adv"] - adv_mean) / (adv_std + 1e-8)

                # policy loss (decisions with a choice)
                pg = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef))
                pg_loss = (pg * c).sum() / n_choice
                entropy_loss = (entropy * c).sum() / n_choice
                # value loss
                v_loss = 0.5 * (w * (newvalue - mb["ret"]) ** 2).sum() / w.sum()
                # constraint penalty: lambda-weighted unmasked probability of breaking each rule
                costs = (w[:, None] * raw_costs(pc, po, mb["breaks"], mb["affordable"])).sum(dim=0) / w.sum()
                cost_loss = (lam * costs).sum()
                loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss + cost_loss

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
            if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                break

        # log
        st = buf["stats"]
        ret, val = b["ret"].numpy(), b["val"].numpy()
        history.append({
            "iteration": iteration, "start": start.isoformat(), "decisions": st["decisions"],
            "net_revenue_retained": round(st["realized"], 2), "expected_return": round(st["expected"], 2),
            "contact_rate": st["contacts"] / max(st["decisions"], 1),
            "eligible_contact_rate": st["contacts"] / max(st["eligible"], 1), "spend": round(st["spend"], 2),
            "level_mix": "/".join(f"{x:.2f}" for x in st["level"] / max(st["contacts"], 1)),
            "delay_mix": "/".join(f"{x:.2f}" for x in st["delay"] / max(st["contacts"], 1)),
            "pg_loss": float(pg_loss.detach()), "v_loss": float(v_loss.detach()),
            "entropy": float(entropy_loss.detach()), "approx_kl": approx_kl, "clipfrac": float(np.mean(clipfracs)),
            "explained_variance": 1 - float(np.var(ret - val) / (np.var(ret) + 1e-12)),
            **{f"cost_{r}": float(x) for r, x in zip(RULES, measured)},
            **{f"lambda_{r}": float(x) for r, x in zip(RULES, lam)},
            "seconds": round(time.perf_counter() - started, 1),
        })
        if log_path is not None:
            write_log(history, log_path)
        bar.set_postfix(net=f"{st['realized']:.0f}", kl=f"{approx_kl:.4f}",
                        lam="/".join(f"{x:.3f}" for x in lam.tolist()))
    return agent, history


def write_log(history: list[dict], path: str | Path) -> None:
    """The training log as CSV (rewritten each iteration: a killed run leaves a readable file)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def learning_curve(history: list[dict], path: str | Path, cost_limit: float, title: str = "") -> None:
    """Three panels: net revenue retained per episode, unmasked violation probability per rule, multipliers."""
    it = [h["iteration"] for h in history]
    fig = Figure(figsize=(7, 8))
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    top.plot(it, [h["net_revenue_retained"] for h in history], label="net revenue retained (drawn)")
    top.plot(it, [h["expected_return"] for h in history], label="expected", alpha=0.7)
    top.set_ylabel("per episode")
    top.set_title(f"Constrained PPO learning curve{': ' + title if title else ''}")
    top.legend()
    for r in RULES:
        middle.plot(it, [h[f"cost_{r}"] for h in history], label=r)
        bottom.plot(it, [h[f"lambda_{r}"] for h in history], label=r)
    middle.axhline(cost_limit, color="k", linestyle=":", label="limit")
    middle.set_yscale("log")
    middle.set_ylabel("P(break) unmasked")
    middle.legend()
    bottom.set_ylabel("lambda")
    bottom.set_xlabel("iteration (one episode each)")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def config_dict(cfg: PPOConfig) -> dict:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(cfg).items()}
