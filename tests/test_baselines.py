"""sgconv_core.baselines: the ListOps majority, top-operator lookup and one-level baselines on hand-written
expressions with hand-computed answers, and on the default task (the issue's MIN->0, MAX->9, MED->4, SM->4)."""
import pytest
import torch

from sgconv_core.baselines import fit_listops_baselines, listops_baselines, parse_listops
from sgconv_core.stats import wilson_interval
from sgconv_core.tasks import LISTOPS_VOCAB, get_task, listops_detokenize


def tokens(texts, L=24):
    """Token ids (N, L) of expressions written like listops_detokenize's output."""
    x = torch.zeros(len(texts), L, dtype=torch.int64)
    for i, t in enumerate(texts):
        ids = [LISTOPS_VOCAB.index(w) for w in t.split()]
        x[i, :len(ids)] = torch.tensor(ids)
    return x


# (expression, its value computed by hand)
TRAIN = [("[MIN 3 4 ]", 3), ("[MIN 0 5 ]", 0), ("[MIN 0 [MAX 1 2 ] ]", 0), ("[MAX 7 9 ]", 9),
         ("[MAX [SM 5 6 ] 2 ]", 2), ("[MED 1 4 7 ]", 4), ("[SM [MAX 3 8 ] 1 ]", 9), ("[SM 2 2 ]", 4),
         ("[MAX [MAX 2 8 ] 0 ]", 8), ("[MAX 9 1 ]", 9)]
# labels 3 0 0 9 2 4 9 4 8 9: majority 9 (3 times); by top operator MIN [3 0 0] -> 0, MAX [9 2 8 9] -> 9,
# MED [4] -> 4, SM [9 4] -> 4 (a tie goes to the smaller class); top-level sub-expressions: MAX [2 8 8] -> 8,
# SM [1] -> 1, none for MIN and MED (they fall back to their lookup class, 0 and 4)
TEST = [("[MIN [MAX 0 1 ] 9 ]", 1),   # majority 9 no, lookup 0 no, one-level min(8, 9) = 8 no
        ("[MAX 1 [SM 3 3 ] ]", 6),    # 9 no, 9 no, max(1, 1) = 1 no
        ("[SM 1 [MAX 7 8 ] ]", 9),    # 9 yes, 4 no, (1 + 8) % 10 = 9 yes
        ("[MED 4 4 4 ]", 4),          # 9 no, 4 yes, 4 yes
        ("7", 7),                     # 9 no, a bare digit is itself: yes, yes
        ("[MIN 0 [SM 2 3 ] ]", 0)]    # 9 no, 0 yes, min(0, 1) = 0 yes


def _split(rows):
    return tokens([t for t, _ in rows]), torch.tensor([v for _, v in rows])


def test_hand_written_labels_are_right():
    from sgconv_core.baselines import _value

    for text, v in TRAIN + TEST:
        assert _value(parse_listops(tokens([text])[0])) == v, text


def test_fit_tables_known_answer():
    b = fit_listops_baselines(*_split(TRAIN))
    assert b.majority == 9 and b.lookup == (0, 9, 4, 4) and b.sub_value == (0, 8, 4, 1)
    assert b.tables()["operator_lookup"] == {"MIN": 0, "MAX": 9, "MED": 4, "SM": 4}


def test_predictions_and_scores_known_answer():
    b = fit_listops_baselines(*_split(TRAIN))
    x, y = _split(TEST)
    assert b.predict("majority", x).tolist() == [9] * 6
    assert b.predict("operator_lookup", x).tolist() == [0, 9, 4, 4, 7, 0]
    assert b.predict("one_level", x).tolist() == [8, 1, 9, 4, 7, 0]
    s = b.score(x, y)
    for name, k in (("majority", 1), ("operator_lookup", 3), ("one_level", 4)):
        assert (s[name]["k"], s[name]["n"]) == (k, 6)
        assert s[name]["value"] == pytest.approx(k / 6)
        assert (s[name]["ci_low"], s[name]["ci_high"]) == wilson_interval(k, 6)


def test_parse_refuses_malformed():
    for text, msg in (("[MIN 3", "never closed"), ("]", "unexpected token"), ("3 4", "after the end"),
                      ("[MIN ]", "without arguments")):
        with pytest.raises(ValueError, match=msg):
            parse_listops(tokens([text])[0])
    b = fit_listops_baselines(*_split(TRAIN))
    with pytest.raises(ValueError, match="unknown baseline"):
        b.predict("oracle", tokens(["7"]))


def test_default_task_tables_and_majority_matches_task_baseline():
    """On the default task (depths 3..4) the lookup is MIN->0, MAX->9, MED->4 and SM -> the most common label of
    SM-rooted training expressions (SM's values are near uniform: 2 on this split, 4 on the old depth-4 task), and
    the majority baseline on the test split equals Task.baseline() (all computed from the data)."""
    task = get_task("listops")
    r = listops_baselines(task, "test")
    x, y = task.split("train")
    sm = y[x[:, 0] == 4]  # token 4 is "[SM"
    assert r["tables"]["operator_lookup"] == {"MIN": 0, "MAX": 9, "MED": 4, "SM": int(torch.bincount(sm).argmax())}
    assert r["majority"]["value"] == pytest.approx(task.baseline(), abs=1e-12)
    assert r["majority"]["n"] == r["one_level"]["n"] == 1000
    # one level of the tree beats the lookup, which beats the majority, each above the other's interval
    assert r["majority"]["ci_high"] < r["operator_lookup"]["value"]
    assert r["operator_lookup"]["ci_high"] < r["one_level"]["value"]
    # sanity: the hand-written test expressions round-trip through the detokenizer the app uses
    assert listops_detokenize(tokens([TEST[0][0]])[0]) == TEST[0][0]


def test_listops_baselines_needs_listops():
    with pytest.raises(ValueError, match="listops task"):
        listops_baselines(get_task("delay", L=32, n_train=4, n_val=2, n_test=2))


def test_evaluate_listops_prints_baselines_beside_the_model(capsys):
    """evaluate on a ListOps checkpoint: fresh expressions (none in train; val/test overlap counted here
    independently), the model and the three baselines on the same examples, each with n and a Wilson interval."""
    import json
    from pathlib import Path

    import sgconv_core
    from sgconv_core.evaluate import main, task_of

    path = Path(__file__).resolve().parents[1] / "pretrained" / "listops-sgconv.safetensors"
    assert main([str(path), "--n", "150", "--seed", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    assert (out["source"], out["n"], out["n_unique"]) == ("fresh", 150, 150)
    assert "150 fresh expressions (generated with seed 5, distinct, none in the train split" in lines[0]
    task = task_of(sgconv_core.load(path))
    x, y = task.sample(150, 5)
    texts = {listops_detokenize(r) for w in ("val", "test") for r in task.split(w)[0]}
    assert out["overlap_val_test"] == sum(listops_detokenize(r) in texts for r in x)
    want = fit_listops_baselines(*task.split("train")).score(x, y)
    for name, label in (("majority", "majority class"), ("operator_lookup", "top-operator lookup"),
                        ("one_level", "one-level")):
        got = out["baselines"][name]
        assert (got["k"], got["n"]) == (want[name]["k"], 150)
        assert (got["ci_low"], got["ci_high"]) == wilson_interval(got["k"], 150)
        line = next(ln for ln in lines if label + " (fitted" in ln)
        assert f"{got['value']:.4f}, 95% CI [{got['ci_low']:.4f}, {got['ci_high']:.4f}] (Wilson), n = 150" in line
    k = round(out["value"] * 150)
    assert (out["ci_low"], out["ci_high"]) == wilson_interval(k, 150)
