"""The grounding check: hallucinated messages are all caught, by kind; good messages all pass the whole shield.

The customer is Irina: 7 months with us, $80.00 a month, offered 15 % for 12 months (or nothing, for the check-in
messages); Sarah is another customer of the day. The brand is the default, Northwind Mobile.
"""
import json

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.messages.grounding import GROUNDING, read_claims
from retention.messages.shield import evaluate, shield
from retention.rlhf.data import fill, read_messages

DS = "2025-03-09"
CUSTOMER = {"customer_id": "7590-VHVEG", "name": "Irina", "channel": "sms", "tenure_months": 7,
            "monthly_charges": 80.0, "contact": True}

HALLUCINATED = [
    # from the PPO and SFT samples of issue 17
    ("Hi Irina, welcome to App-Cemtech. Let us take 15% off your monthly bill for the next 12 months.",
     "proper_nouns"),
    ("Hi Irina, thank you for choosing FiberToCiti. Here is 15% off your monthly bill for the next 12 months.",
     "proper_nouns"),
    ("Hi Irina, we are offering a 15% off your monthly bill for their entire 3-month program.", "numbers"),
    ("Hi Irina, we will gift you 15% off your $100 monthly bill for the next 12 months.", "numbers"),
    ("Hi Irina, here is 15% off your monthly bill for the next 12 months. Your 12-month financial picture is here.",
     "numbers"),
    ("Merci Sarah, we are taking 15% off your monthly bill for the next 12 months. Thank you, Irina.",
     "proper_nouns"),
    # other languages and scripts
    ("Merci Irina, nous vous offrons 15% de réduction sur votre facture mensuelle pendant 12 mois.", "language"),
    ("Hola Irina, te ofrecemos un 15% de descuento en tu factura mensual durante los próximos 12 meses.",
     "language"),
    ("Hallo Irina, wir geben Ihnen 15% Rabatt auf Ihre monatliche Rechnung für die nächsten 12 Monate.",
     "language"),
    ("Ciao Irina, ti offriamo il 15% di sconto sulla bolletta mensile per i prossimi 12 mesi. Grazie!", "language"),
    ("Olá Irina, oferecemos 15% de desconto na sua fatura mensal durante os próximos 12 meses. Obrigado!",
     "language"),
    ("Привет Irina, we are taking 15% off your monthly bill for the next 12 months. Thank you!", "language"),
    ("Hi Irina, 感谢您的支持! Here is 15% off your monthly bill for the next 12 months.", "language"),
    # terms that contradict the 12-month offer, tenures that are not hers
    ("Hi Irina, here is 15% off your monthly bill for the next 24 months, thank you for being with us.", "numbers"),
    ("Hi Irina, here is 15% off your monthly bill for the next 6 months, thank you for being with us.", "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for two years. Thank you for being with Northwind Mobile.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, after a 3-month trial period.", "numbers"),
    ("Hi Irina, thank you for 5 years with us. Here is 15% off your monthly bill for the next 12 months.",
     "numbers"),
    ("Hi Irina, after 36 months with us you deserve 15% off your monthly bill for the next 12 months.", "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. Your next bill is due in 10 days.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill in the coming 7 months. Thank you for being with us.", "numbers"),
    # invented amounts and fees, other currencies
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. A $5 activation fee applies.", "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. A small service fee applies.",
     "second_offer"),
    ("Hi Irina, your bill drops from $80 to $60 with 15% off for the next 12 months. Thank you for being with us.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, that is $9.60 saved every month.",
     "numbers"),
    ("Hi Irina, as one of our top 100 customers, enjoy 15% off your monthly bill for the next 12 months.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your €80 monthly bill for the next 12 months. Thank you for staying with us.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill of £80 for the next 12 months. Thank you for being with us.",
     "numbers"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, that is 12 euros back every month.",
     "numbers"),
    ("Hi Irina, you save ¥1,200 with 15% off your monthly bill for the next 12 months. Thanks for being with us.",
     "numbers"),
    # second offers
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, plus a free upgrade to fiber.",
     "second_offer"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, plus cashback on your next phone.",
     "second_offer"),
    ("Hi Irina, here is 15% off for the next 12 months, and we will waive your early termination charge.",
     "second_offer"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. Add a second line for half price.",
     "second_offer"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months and unlimited data at no cost.",
     "second_offer"),
    # dates
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months if you reply by Friday.", "dates"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months, starting March 1.", "dates"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. We will call you tomorrow at 10 am.",
     "dates"),
    ("Hi Irina, starting 04/01/2025 you get 15% off your monthly bill for the next 12 months.", "dates"),
    ("Hi Irina, from the 1st of next month, enjoy 15% off your monthly bill for the next 12 months.", "dates"),
    # other people and companies
    ("Hi Irina, my colleague John will apply 15% off your monthly bill for the next 12 months.", "proper_nouns"),
    ("Hi Irina, thank you from Sarah and the team. Here is 15% off your monthly bill for the next 12 months.",
     "proper_nouns"),
    ("Hi Irina, unlike Verizon, we give you 15% off your monthly bill for the next 12 months.", "proper_nouns"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. Sent from our Dallas office.",
     "proper_nouns"),
    ("Hi Irina, here is 15% off your AT&T bill for the next 12 months. Thank you for being with us.",
     "proper_nouns"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months on your iPhone plan with us.",
     "proper_nouns"),
    ("Hi Irina, thank you for choosing Northwind Telecom. Enjoy 15% off your monthly bill for the next 12 months.",
     "proper_nouns"),
    ("Hi Irina, enjoy 15% off your monthly bill for the next 12 months. Best wishes from the Northwind Mobile CEO.",
     "proper_nouns"),
]
"""(message, the kind of grounding failure it must be caught by), the offer being 15 %."""

HALLUCINATED_CHECK_IN = [
    ("Hi Irina, thank you for being with us. We would like to offer you a discount on your monthly bill.",
     "second_offer"),
    ("Hi Irina, how is your service going? Tell us, and we can lower your bill for the next 12 months.", "numbers"),
    ("Hi Irina, thanks for being with us. Your $80 bill is too high; reply and we will find you savings.",
     "second_offer"),
    ("Hi Irina, thanks for being with us. How is your service going? We can talk on Monday if you like.", "dates"),
]
"""The same for a check-in (no offer): a discount, a term or a date is all invention."""

GOOD = [
    "Hi Irina, thank you for being with Northwind Mobile. Here is 15% off your monthly bill for the next 12 months.",
    "Hi Irina, thank you for 7 months with us. Enjoy 15% off your monthly bill for the next 12 months.",
    "Hi Irina, your $80 monthly bill gets 15% off for the next 12 months. Thank you for being with us.",
    "Hi Irina, with 15% off for the next 12 months, you save $12 on your $80 monthly bill. Thank you!",
    "Hi Irina, your monthly bill drops from $80.00 to $68.00 with 15% off for the next 12 months.",
    "Dear Irina, as a thank you from Northwind Mobile, we are taking 15% off your monthly bill for a year.",
    "Hello Irina, thanks for your loyalty. Enjoy 15% off your monthly bill for the next year. Reply with questions.",
    "Irina, thanks for choosing us. Here is 15% off your monthly bill for the next 12 months. Reply YES to claim it.",
    "Hi Irina, a 12-month discount of 15% off your monthly bill is yours. Just reply to accept it. Thanks!",
    "Hi Irina, we would like to offer you 15% off your monthly bill over the next twelve months. Kind regards.",
    "Hi Irina, feel free to reply with questions. We are taking 15% off your monthly bill for the next 12 months.",
    "Hi Irina, it has been seven months since you joined Northwind Mobile. Enjoy 15% off for the next 12 months.",
    "Hi Irina, I'm from your Northwind Mobile account team. I'd like to give you 15% off your bill for 12 months.",
    "Welcome back, Irina. A thank you from us: 15% off your monthly bill for the next 12 months. Tap to accept.",
    "Hi Irina, thanks for using the Northwind Mobile app! Enjoy 15% off your bill for the next 12 months.",
    "Good day Irina, thanks for taking our call. As a thank you we are offering 15% off your bill for 12 months.",
    "Hi Irina, we appreciate you! Take 15% off your monthly bill for the next 12 months. Reply YES if you want it.",
    "Hi Irina, how is your fiber plan working for you? As thanks, here is 15% off your bill for the next 12 months.",
    "Hi Irina, here\u2019s 15% off your monthly bill for the next 12 months. We\u2019re glad you\u2019re with us.",
    "Irina, thank you for your time with us. We're happy to offer 15% off your monthly charges for a full year.",
    "Hi Irina, we value you. May we take 15% off your monthly bill for the next 12 months? Just reply and it's done.",
    "Hi Irina! Thanks for being with us. Enjoy 15% off your monthly bill for the next 12 months, from your next bill.",
    "Hi Irina, as a thank you for being a Northwind Mobile customer, we'd like to take 15% off your bill for a year.",
    "Hi Irina, we're grateful you chose us. Enjoy 15% off your monthly bill for the next 12 months if it helps.",
    "Hi Irina, thanks for staying with us. 15% off your monthly bill for the next 12 months is ready when you are.",
    "Hi Irina, a small thank you from our team: 15% off your monthly bill for the next 12 months. Reply to accept.",
    "Hi Irina, you have been with us for 7 months, and we are grateful. Enjoy 15% off your bill for 12 months.",
    "Hi Irina, thank you for being with us. Your Northwind Mobile team is taking 15% off your bill for 12 months.",
    "Hi Irina, we hope your DSL service is going well. Enjoy 15% off your monthly bill for the next 12 months.",
    "Hi Irina, thanks for being with us. Here is 15% off for the next 12 months, so your $80 bill becomes $68.",
    "Hi Irina, enjoy 15% off your next 12 months with us. Best, The Northwind Mobile Team",
    "Hi Irina, here are 12 months of 15% off your monthly bill. Thanks, your Northwind Mobile team",
]
"""Good messages with the 15 % offer: the brand, her tenure, her charges and the offer's share of them."""

GOOD_CHECK_IN = [
    "Hi Irina, thank you for being with Northwind Mobile. How is your service going? We are here to help any time.",
    "Hello Irina, we would love to hear how your plan is working for you. Reply any time and our team will help.",
    "Irina, thanks for choosing us. If anything about your plan is not working for you, our team is ready to help.",
    "Hi Irina, thank you for 7 months with Northwind Mobile! Is your service working well? Let us know if we can help.",
    "Hi Irina, just checking in. How has your service been lately? Our team is here if you need anything.",
    "Dear Irina, we want to be sure your plan still fits your needs. Tell us what would make it better for you.",
    "Hi Irina, is your $80 plan still right for you? Reply any time and we will help you find the best fit.",
    "Hi Irina, thanks for using our app. If anything is not working for you, tap Help and our team will assist.",
    "Hello Irina, this is your Northwind Mobile account team calling to check in. How is your service going?",
    "Hi Irina, we hope your Wi-Fi and service are working well. Feel free to reply if there is anything we can do.",
    "Irina, quick check-in from your provider: is everything working well? Reply and we will help. Thank you!",
    "Hi Irina, I hope all is well. Your feedback matters to us, so tell us how your service is going. Thanks!",
]
"""Good check-in messages (no offer)."""


def _one(message: str, pct: float) -> tuple[dict, pd.DataFrame]:
    """The shield's outcome per check for Irina's message, with Sarah (not contacted) in the day's batch."""
    batch = pd.DataFrame([CUSTOMER | {"offer_pct": pct, "message": message, "generator": "transformers"},
                          {"customer_id": "5575-GNVDE", "name": "Sarah", "channel": "email", "offer_pct": 0.0,
                           "contact": False}])
    out = shield(batch, Config(), DS)
    return json.loads(out["shield_checks"][0]), out


def test_the_lists_are_long_enough():
    assert len(HALLUCINATED) + len(HALLUCINATED_CHECK_IN) >= 40 and len(GOOD) + len(GOOD_CHECK_IN) >= 40
    assert {kind for _, kind in HALLUCINATED} == set(GROUNDING)


@pytest.mark.parametrize("message, kind", HALLUCINATED, ids=range(len(HALLUCINATED)))
def test_hallucinated_offer_message_is_caught(message, kind):
    checks, out = _one(message, 0.15)
    assert checks[kind] == "fail" and checks["action"] == "template", checks
    assert out["generator"][0] == "template_fallback" and "15%" in out["message"][0]


@pytest.mark.parametrize("message, kind", HALLUCINATED_CHECK_IN, ids=range(len(HALLUCINATED_CHECK_IN)))
def test_hallucinated_check_in_is_caught(message, kind):
    checks, _ = _one(message, 0.0)
    assert checks[kind] == "fail" and checks["action"] == "template", checks


@pytest.mark.parametrize("message", GOOD, ids=range(len(GOOD)))
def test_good_offer_message_passes(message):
    checks, out = _one(message, 0.15)
    assert set(checks.values()) == {"pass", "none"}, checks
    assert out["message"][0] == message


@pytest.mark.parametrize("message", GOOD_CHECK_IN, ids=range(len(GOOD_CHECK_IN)))
def test_good_check_in_passes(message):
    checks, _ = _one(message, 0.0)
    assert set(checks.values()) == {"pass", "none"}, checks


def test_the_rlhf_good_messages_are_grounded():
    """The good messages of the preference data (filled for Irina) pass the grounding check too."""
    good = [m for m in read_messages() if m["kind"] == "good"]
    rows = pd.DataFrame([CUSTOMER | {"offer_pct": 0.15 if m["offer"] == "discount" else 0.0} for m in good])
    texts = pd.Series([fill(m["text"], "Irina", "15%" if m["offer"] == "discount" else "", "Sarah") for m in good])
    codes, _ = evaluate(rows, texts, rows)
    assert len(good) >= 40 and all((codes[kind] == 0).all() for kind in GROUNDING)


def test_facts_are_the_rows_own():
    """Her tenure and charges support a message; another customer's, or none given, do not."""
    message = "Hi Irina, thank you for 7 months with us. Your $80 bill gets 15% off for the next 12 months."
    rows = pd.DataFrame([CUSTOMER | {"offer_pct": 0.15}, CUSTOMER | {"offer_pct": 0.15, "tenure_months": 8},
                         CUSTOMER | {"offer_pct": 0.15, "monthly_charges": 79.5},
                         CUSTOMER | {"offer_pct": 0.15, "monthly_charges": "n/a"}])
    codes, _ = evaluate(rows, pd.Series([message] * 4), rows.head(1))
    assert codes["numbers"].tolist() == [0, 1, 1, 1]
    bare = rows.head(1).drop(columns=["tenure_months", "monthly_charges"])
    assert evaluate(bare, pd.Series([message]), bare)[0]["numbers"].tolist() == [1]


def test_the_offer_term_needs_an_offer():
    """"For 12 months" may be her tenure; "for the next 12 months" is a term, and needs an offer."""
    plain = "Hi Irina, thank you for being with us for 12 months. How is your service going? We are here to help."
    future = "Hi Irina, thank you for being with us. We are here for you for the next 12 months, just ask."
    rows = pd.DataFrame([CUSTOMER | {"offer_pct": 0.0}, CUSTOMER | {"offer_pct": 0.0, "tenure_months": 12}] * 2)
    codes, _ = evaluate(rows, pd.Series([plain, plain, future, future]), rows)
    assert codes["numbers"].tolist() == [1, 0, 1, 1]


def test_brand_is_the_configured_one():
    cfg = Config(brand_name="Acme Tel")
    message = "Hi Irina, thank you for being with Acme Tel. Here is 15% off your monthly bill for the next 12 months."
    plan = pd.DataFrame([CUSTOMER | {"offer_pct": 0.15, "generator": "transformers"}] * 2)
    plan["message"] = [message, message.replace("Acme Tel", "Northwind Mobile")]
    out = shield(plan, cfg, DS)
    checks = [json.loads(c) for c in out["shield_checks"]]
    assert [c["proper_nouns"] for c in checks] == ["pass", "fail"]
    fallback = out["message"][1]
    assert "Northwind" not in fallback and json.loads(shield(out, cfg, DS)["shield_checks"][1])["action"] == "none"


def test_a_customer_named_like_a_brand_word_is_no_other_customer():
    """A batch customer called "Mobile" is not named by a template that says "Northwind Mobile"."""
    message = "Hi Irina, thank you for being with Northwind Mobile. Here is 15% off your bill for the next 12 months."
    batch = pd.DataFrame([CUSTOMER | {"offer_pct": 0.15, "message": message, "generator": "transformers"},
                          {"customer_id": "x", "name": "Mobile", "channel": "sms", "offer_pct": 0.0, "contact": False}])
    assert json.loads(shield(batch, Config(), DS)["shield_checks"][0])["action"] == "none"


@pytest.mark.parametrize("text, failed, term, facts", [
    ("Hi \x00, 10% off for the next 12 months.", set(), (True, False), ()),
    ("Hi \x00, 10% off for a year, and $80 a month.", set(), (False, True), (("amount", 80.0),)),
    ("Hi \x00, a 12-month discount of 10%.", set(), (True, False), ()),
    ("Hi \x00, 10% off for the next 3 months.", {"numbers"}, (False, False), ()),
    ("Hi \x00, thanks for 3 months with us.", set(), (False, False), (("months", 3.0),)),
    ("\x00, your 12-month financial picture is here.", set(), (False, False), (("months", 12.0),)),
    ("Hi \x00, see you next week.", {"dates"}, (False, False), ()),
    ("May we help, \x00? Tell us how your plan is going.", set(), (False, False), ()),
    ("Hi \x00, from all of us at FiberToCiti.", {"proper_nouns"}, (False, False), ()),
    ("Hi \x00, ten lines for you.", set(), (False, False), (("number", 10.0),)),
])
def test_read_claims(text, failed, term, facts):
    claims = read_claims(text)
    assert (set(claims.failed), (claims.term, claims.term_or_tenure), claims.facts) == (failed, term, facts)


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language"):
        read_claims("Hi \x00, how are you?", "xx")


def test_template_path_is_read_once_per_distinct_wording(monkeypatch):
    """A day of template messages reads a few hundred distinct texts, not one per customer."""
    from retention.messages import grounding

    calls = []
    monkeypatch.setattr(grounding, "read_claims", lambda t, lang: calls.append(t) or grounding.Claims(
        frozenset(), False, False, False))
    n = 2000
    rng = np.random.default_rng(0)
    plan = pd.DataFrame({"customer_id": [f"{i:05d}" for i in range(n)],
                         "name": rng.choice(["Ann", "Bob", "Irina", "José", "Mary Ann"], n),
                         "channel": rng.choice(["email", "sms", "phone", "app"], n),
                         "offer_pct": rng.choice([0.0, 0.05, 0.10, 0.15], n), "contact": True})
    from retention.messages.generate import generate

    shield(generate(plan, Config(), DS), Config(), DS)
    assert len(calls) == len(set(calls)) <= 12 * 3 * 4
