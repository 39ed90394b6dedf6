"""Every model in pretrained/ loads and reproduces the test metric its card claims.

Each model is re-scored on the first 200 examples of its task's test split (rebuilt from the card) and
compared with the card's value on the whole test split. Tolerance: accuracy within 3 binomial standard
errors of a 200-example estimate, 3 * sqrt(p (1 - p) / 200), plus 1/200 for rounding (about +-0.05 at
p = 0.8, +-0.02 at p = 0.98); NMSE within a relative 25 %. Skipped when pretrained/ holds no model.
"""
import glob
import math
import os

import pytest

import sgconv_core
from sgconv_core.evaluate import evaluate_split
from sgconv_core.zoo_table import markdown, read_card

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "pretrained")
FILES = sorted(glob.glob(os.path.join(FOLDER, "*.safetensors")))
N_SLICE = 200
CARD_FIELDS = {"task", "task_params", "metric", "test_value", "baseline", "steps", "wall_time_s", "device",
               "seed", "kernel_params", "total_params", "model_config", "torch", "date", "command", "test_n", "test_ci",
               "test_interval"}

pytestmark = pytest.mark.skipif(not FILES, reason="pretrained/ holds no .safetensors models (train the zoo first)")


def tolerance(metric: str, value: float, n: int) -> float:
    if metric == "accuracy":
        return 3 * math.sqrt(max(value * (1 - value), 0.0) / n) + 1 / n
    return 0.25 * value


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_pretrained_model_reproduces_its_card(path):
    ck = sgconv_core.load(path)
    card = ck.card
    assert CARD_FIELDS <= set(card), CARD_FIELDS - set(card)
    name = os.path.splitext(os.path.basename(path))[0]
    assert name == f"{card['task']}-{card['family']}" and ck.family == card["family"]
    assert card["kernel_params"] == ck.n_kernel_params and card["total_params"] == ck.n_params
    got = evaluate_split(ck, "test", limit=N_SLICE)
    n, want = got["n"], card["test_value"]
    assert n == min(N_SLICE, card["n_test"])
    tol = tolerance(card["metric"], want, n)
    assert abs(got["value"] - want) <= tol, f"{name}: {got['value']:.4f} on {n} test examples vs card {want:.4f} (tol {tol:.4f})"


def test_zoo_table_lists_every_model():
    table = markdown(FOLDER)
    for path in FILES:
        assert os.path.splitext(os.path.basename(path))[0] in table
        assert read_card(path)["command"].startswith("python -m sgconv_core.train")


def test_zoo_fits_the_size_budget():
    assert sum(os.path.getsize(f) for f in FILES) < 30 * 2**20


def test_readme_table_is_current():
    """pretrained/README.md holds exactly the table the cards give (regenerate: python -m sgconv_core.zoo_table --write)."""
    from sgconv_core.zoo_table import BEGIN, END

    with open(os.path.join(FOLDER, "README.md")) as f:
        text = f.read()
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown(FOLDER, commands=True).strip(), "stale table: run python -m sgconv_core.zoo_table --write"


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_pretrained_model_reproduces_its_card_on_the_whole_test_split(path):
    """The card's value was measured on the whole test split: re-scoring it gives the same number (accuracy
    to one example, NMSE to 1e-3 relative: batching and BLAS may differ from the training run)."""
    ck = sgconv_core.load(path)
    got = evaluate_split(ck, "test")
    want = ck.card["test_value"]
    assert got["n"] == ck.card["n_test"]
    tol = 1.0 / got["n"] + 1e-9 if ck.card["metric"] == "accuracy" else 1e-3 * want
    assert abs(got["value"] - want) <= tol, (got["value"], want)


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_cards_carry_n_and_an_interval_that_fit_their_split(path):
    """test_n is the test split's size (all distinct), test_ci brackets test_value; for accuracy it is the
    Wilson interval of test_value * test_n correct answers."""
    from sgconv_core.stats import wilson_interval

    card = read_card(path)
    assert card["test_n"] == card["n_test"]
    lo, hi = card["test_ci"]
    assert lo <= card["test_value"] <= hi
    if card["metric"] == "accuracy":
        k = round(card["test_value"] * card["test_n"])
        assert abs(k - card["test_value"] * card["test_n"]) < 1e-6
        assert (lo, hi) == pytest.approx(wilson_interval(k, card["test_n"]), abs=1e-12)
    else:
        assert hi - lo < 0.5 * card["test_value"]  # a bootstrap interval of a mean over 500 sequences is narrow


LISTOPS = [f for f in FILES if os.path.basename(f).startswith("listops-")]


@pytest.mark.parametrize("path", LISTOPS, ids=[os.path.basename(f) for f in LISTOPS])
def test_listops_cards_list_the_baselines_of_their_own_test_split(path):
    from sgconv_core.baselines import listops_baselines
    from sgconv_core.tasks import task_from_card

    card = read_card(path)
    task = task_from_card(card)
    assert task.spec.params["L"] == 192 and task.spec.params["min_depth"] == 3  # the current default task
    want = listops_baselines(task, "test")
    for name in ("majority", "operator_lookup", "one_level"):
        got = card["test_baselines"][name]
        assert got["value"] == want[name]["value"] and got["n"] == card["test_n"]
        assert got["ci"] == pytest.approx([want[name]["ci_low"], want[name]["ci_high"]], abs=1e-12)
