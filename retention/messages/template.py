"""The deterministic template backend: an opening per channel and a body per offer, picked by a stable hash of
(customer_id, ds). It is the backend without a model, and the safe replacement for any message the shield rejects.
Some openings name the brand (Config.brand_name)."""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from retention.config import CHANNELS, Config
from retention.hashing import stable_hash
from retention.messages.prompt import clean_name, format_pct

OPENINGS = {
    "email": ("Hi {name}, thank you for being with {brand}.",
              "Dear {name}, we appreciate having you as a customer.",
              "Hello {name}, thanks for staying with us."),
    "sms": ("Hi {name}, thanks for being with us!",
            "{name}, thanks for choosing {brand}.",
            "Hey {name}, we appreciate you."),
    "phone": ("Hello {name}, this is your {brand} account team calling.",
              "Hi {name}, we are calling to say thank you.",
              "Good day {name}, thanks for taking our call."),
    "app": ("Hi {name}, thanks for using the {brand} app.",
            "{name}, we are glad you are here.",
            "Welcome back, {name}."),
}
"""Greeting wordings per channel; each holds {name} once, some {brand}."""
CHECK_IN = (
    "We would love to hear how your service is going, and we are here to help any time.",
    "If anything about your plan is not working for you, our team is ready to help.",
    "We want to be sure your plan still fits your needs. Tell us what would help.",
)
"""Body wordings for offer level 0: no discount, no percentage."""
DISCOUNT = (
    "As a thank you, we would like to give you {pct} off your monthly bill for the next 12 months.",
    "Enjoy {pct} off your plan for the next 12 months. Let us know and we will apply it.",
    "Here is {pct} off your monthly charges for a year, with our thanks for your loyalty.",
)
"""Body wordings for offer levels 1-3; each holds {pct} once."""
TEMPLATE_MODEL = "template"
"""message_model of the template backend."""
BRAND_MAX = 30
"""Longest brand name: with a NAME_MAX name every wording stays within the shield's 200 characters."""


# each wording split at its slot: (text before, text after)
_DISCOUNT_PARTS = np.array([b.split("{pct}") for b in DISCOUNT], dtype=StringDType())  # (3, 2)
_CHECK_IN_PARTS = np.array([(b, "") for b in CHECK_IN], dtype=StringDType())  # (3, 2)


def template_messages(rows: pd.DataFrame, ds: str, brand: str = Config.brand_name) -> pd.Series:
    """Deterministic messages from `brand`: an opening for the channel and a body for the offer, picked by
    hash(customer_id|ds)."""
    channel = pd.Categorical(rows["channel"], categories=CHANNELS).codes
    if np.any(channel < 0):
        bad = rows.loc[channel < 0].iloc[0]
        raise ValueError(f"customer_id={bad['customer_id']!r}: field channel={bad['channel']!r} not in {CHANNELS}")
    h = stable_hash(rows["customer_id"].astype("str") + f"|{ds}")
    pct = rows["offer_pct"].to_numpy(dtype=np.float64)
    head = _opening_parts(brand)[channel, h % 3]  # (n, 2): text before and after the name
    tail = np.where((pct > 0)[:, None], _DISCOUNT_PARTS[(h >> 32) % 3], _CHECK_IN_PARTS[(h >> 32) % 3])  # (n, 2)
    name = clean_name(rows["name"]).to_numpy(dtype=StringDType())
    text = head[:, 0] + name + head[:, 1] + " " + tail[:, 0] + pct_texts(pct) + tail[:, 1]
    return pd.Series(text, index=rows.index, dtype="str")


def pct_texts(pct: np.ndarray) -> np.ndarray:
    """format_pct of each row ("" for no discount), computed once per distinct offer."""
    uniq, inverse = np.unique(pct, return_inverse=True)
    return np.array([format_pct(p) if p > 0 else "" for p in uniq], dtype=StringDType())[inverse]


@functools.lru_cache(maxsize=4)
def _opening_parts(brand: str) -> np.ndarray:
    """The openings with `brand` filled in, each split at its name slot: (channels, 3, 2)."""
    if not 0 < len(brand) <= BRAND_MAX or brand != brand.strip():
        raise ValueError(f"brand_name={brand!r}: expected 1-{BRAND_MAX} characters without outer spaces")
    return np.array([[o.replace("{brand}", brand).split("{name}") for o in OPENINGS[c]] for c in CHANNELS],
                    dtype=StringDType())
