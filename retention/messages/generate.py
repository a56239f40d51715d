"""The generate stage: a message for every contacted customer from the configured backend (template, transformers
or vLLM), the LLM's optionally capped to the contacts of highest value (`llm_max_messages`); what an LLM gets
wrong is retried once and otherwise left for the shield to replace by the template.

The LLM backends live in `llm.py`, imported only when configured: the template path never loads torch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from retention.config import Config
from retention.messages.template import TEMPLATE_MODEL, template_messages


def generate(plan: pd.DataFrame, cfg: Config, ds: str, llm_limit: int = 0, batch=None,
             llm_ids: set[str] | None = None) -> pd.DataFrame:
    """The plan of day `ds` (YYYY-MM-DD) plus message, generator and message_model on the contacted rows.

    cfg.generator picks the backend. An LLM backend's text is retried once where the shield would reject it;
    what still fails is left for the shield stage to replace by the template (never dropped). `llm_limit` > 0
    caps the LLM's share where generation is too slow for every contact: the contacts of highest expected value
    get the model's messages, the others the template. A streamed day passes each chunk as `plan`, the day's
    shield.Batch as `batch` (the whole plan by default) and, with a cap, the day's chosen customers as `llm_ids`.
    """
    contact = plan["contact"].to_numpy(dtype=bool)
    rows = plan.loc[contact]
    text = template_messages(rows, ds, cfg.brand_name)
    generator = pd.Series("template", index=rows.index, dtype="str")
    model = pd.Series(TEMPLATE_MODEL, index=rows.index, dtype="str")
    if cfg.generator != "template":
        from retention.messages import llm  # torch and transformers load only for an LLM backend

        backend = llm.load_backend(cfg)
        chosen = (rows.index[rows["customer_id"].isin(llm_ids)] if llm_ids is not None else rows.index
                  if llm_limit <= 0 else rows.index[llm_choice(rows, llm_limit)])
        text.loc[chosen], generator.loc[chosen] = llm.llm_messages(rows.loc[chosen], ds, backend,
                                                                   plan if batch is None else batch)
        model.loc[chosen] = backend.version
    return plan.assign(message=_on(contact, text, plan.index), generator=_on(contact, generator, plan.index),
                       message_model=_on(contact, model, plan.index))


def llm_choice(rows: pd.DataFrame, llm_limit: int) -> np.ndarray:
    """Positions of the `llm_limit` contacted rows of highest expected value (ties by customer_id)."""
    return np.lexsort((rows["customer_id"].to_numpy(), -rows["expected_value"].to_numpy()))[:llm_limit]


def _on(contact: np.ndarray, values: pd.Series, index: pd.Index) -> pd.Series:
    """A str column with `values` (one per contacted row) there and null elsewhere."""
    out = pd.Series(pd.NA, index=index, dtype="str")
    out.loc[contact] = values.to_numpy()
    return out
