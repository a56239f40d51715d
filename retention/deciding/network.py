"""The decision network: a shared trunk with contact, offer-level and follow-up heads, and the critic PPO trains.

Inference (the daily rollout) needs only this file and torch; training lives in `retention.simulation.ppo`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from retention.deciding.rules import LEVELS
from retention.deciding.sampler import DELAYS, OBS


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    """Shared 128-128 trunk; contact (2), offer level (4), follow-up delay (8) and value heads."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.hidden = hidden
        self.trunk = nn.Sequential(layer_init(nn.Linear(len(OBS), hidden)), nn.Tanh(),
                                   layer_init(nn.Linear(hidden, hidden)), nn.Tanh())
        self.contact = layer_init(nn.Linear(hidden, 2), std=0.01)
        self.offer = layer_init(nn.Linear(hidden, LEVELS), std=0.01)
        self.delay = layer_init(nn.Linear(hidden, DELAYS), std=0.01)
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)

    def logits(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        return self.contact(h), self.offer(h), self.delay(h)

    def inference_logits(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`logits` bit for bit, for torch.inference_mode only: tanh in place (a fresh 1024 x 128 activation costs
        more than the tanh of a block) and F.linear without the module call around it."""
        h = obs
        for linear in (self.trunk[0], self.trunk[2]):  # the trunk is Linear, Tanh, Linear, Tanh
            h = torch.tanh_(F.linear(h, linear.weight, linear.bias))
        return tuple(F.linear(h, head.weight, head.bias) for head in (self.contact, self.offer, self.delay))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.trunk(obs)).squeeze(-1)

    def evaluate(self, obs, action, contact_ok, offer_ok):
        """Masked log-prob and entropy of the joint action, value, and the unmasked probabilities the costs use."""
        h = self.trunk(obs)
        lc, lo, ld = self.contact(h), self.offer(h), self.delay(h)
        contact = action[:, 0] == 1
        offer_ok = offer_ok | ~offer_ok.any(dim=1, keepdim=True)  # no legal offer: never used, keep it finite
        lpc = torch.log_softmax(lc.masked_fill(~contact_ok, -1e9), dim=1)
        lpo = torch.log_softmax(lo.masked_fill(~offer_ok, -1e9), dim=1)
        lpd = torch.log_softmax(ld, dim=1)
        taken = lambda lp, i: lp.gather(1, action[:, i:i + 1]).squeeze(1)
        logp = taken(lpc, 0) + torch.where(contact, taken(lpo, 1) + taken(lpd, 2), 0.0)
        ent = lambda lp: -(lp.exp() * lp).sum(dim=1)
        entropy = ent(lpc) + lpc[:, 1].exp() * (ent(lpo) + ent(lpd))
        return logp, entropy, self.critic(h).squeeze(-1), torch.softmax(lc, -1)[:, 1], torch.softmax(lo, -1)
