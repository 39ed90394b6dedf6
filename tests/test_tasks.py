"""Tests for sgconv_core.tasks: determinism, disjoint splits, shapes, targets, baselines, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgconv_core import tasks as T
from sgconv_core.tasks import TASKS, Task, TaskSpec, get_task, listops_detokenize

SMALL = {
    "digits": {"L": 256, "n_val": 50, "n_test": 50, "n_train": 200},
    "delay": {"L": 128, "lag": 40, "n_train": 60, "n_val": 20, "n_test": 20},
    "listops": {"L": 256, "n_train": 300, "n_val": 50, "n_test": 50},
}


def _clear_caches():
    for f in (T._digits_data, T._delay_data, T._listops_data):
        f.cache_clear()


def _all_splits(task):
    return {w: task.split(w) for w in ("train", "val", "test")}


def _reference_listops(text: str) -> int:
    """Independent evaluator of LRA ListOps text (operators include '[')."""
    ops = {
        "[MIN": min,
        "[MAX": max,
        "[MED": lambda a: int(np.median(a)),
        "[SM": lambda a: int(np.sum(a)) % 10,
    }
    stack = [[]]
    for tok in text.split():
        if tok in ops:
            stack.append([tok])
        elif tok == "]":
            op, *args = stack.pop()
            stack[-1].append(ops[op](args))
        else:
            stack[-1].append(int(tok))
    (value,) = stack[0]
    return value


@pytest.fixture(scope="module")
def listops_default():
    return get_task("listops")


@pytest.fixture(scope="module")
def delay_default():
    return get_task("delay")


# ---------------------------------------------------------------- specs, shapes, dtypes


def test_registry():
    assert TASKS == ("digits", "delay", "listops")


@pytest.mark.parametrize("name", TASKS)
def test_shapes_dtypes_and_spec(name):
    task = get_task(name, seed=0, **SMALL[name])
    s = task.spec
    assert isinstance(task, Task) and isinstance(s, TaskSpec) and s.name == name
    assert s.L == SMALL[name]["L"] == s.params["L"]
    assert set(SMALL[name]) <= set(s.params)
    for which, (x, y) in _all_splits(task).items():
        n = s.params[f"n_{which}"]
        if s.input_kind == "continuous":
            assert x.dtype == torch.float32 and x.shape == (n, s.L, s.d_input)
        else:
            assert x.dtype == torch.int64 and x.shape == (n, s.L)
            assert 0 <= int(x.min()) and int(x.max()) < s.d_input
        if s.output_kind == "class":
            assert y.dtype == torch.int64 and y.shape == (n,)
            assert 0 <= int(y.min()) and int(y.max()) < s.d_output
        else:
            assert y.dtype == torch.float32 and y.shape == (n, s.L, s.d_output)


def test_specs_match_brief():
    d, l, g = get_task("delay"), get_task("listops"), get_task("digits")
    assert (d.spec.input_kind, d.spec.d_input, d.spec.d_output, d.spec.output_kind, d.spec.metric) == (
        "continuous", 1, 1, "sequence", "nmse")
    assert d.spec.params == {"L": 1024, "lag": 256, "band": 0.25, "n_train": 4000, "n_val": 500, "n_test": 500}
    assert (l.spec.input_kind, l.spec.d_input, l.spec.d_output, l.spec.metric) == ("tokens", 16, 10, "accuracy")
    assert l.spec.params == {"L": 192, "min_depth": 3, "max_depth": 4, "max_args": 5, "min_length": 7,
                             "value_p": 0.25, "n_train": 20000, "n_val": 1000, "n_test": 1000}
    assert (g.spec.L, g.spec.d_input, g.spec.d_output, g.spec.output_kind) == (1024, 1, 10, "class")
    assert g.spec.params == {"L": 1024, "side": 32, "n_train": 1297, "n_val": 250, "n_test": 250}
    hash(d.spec)  # params are excluded from the hash, so specs stay hashable


def test_split_returns_copies():
    task = get_task("delay", **SMALL["delay"])
    x, _ = task.split("train")
    x.zero_()
    assert task.split("train")[0].abs().sum() > 0


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_and_seed_dependent(name):
    first = _all_splits(get_task(name, seed=3, **SMALL[name]))
    _clear_caches()  # regenerate, not just re-read the cache
    again = _all_splits(get_task(name, seed=3, **SMALL[name]))
    other = _all_splits(get_task(name, seed=4, **SMALL[name]))
    for w in first:
        assert torch.equal(first[w][0], again[w][0]) and torch.equal(first[w][1], again[w][1])
        assert not torch.equal(first[w][0], other[w][0])


@pytest.mark.parametrize("name", TASKS)
def test_sample_deterministic(name):
    task = get_task(name, seed=1, **SMALL[name])
    a, b, c = task.sample(20, seed=5), task.sample(20, seed=5), task.sample(20, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    x, y = task.sample(7, seed=0)
    assert x.shape[1:] == task.split("test")[0].shape[1:] and len(x) == len(y) == 7


def test_digits_sample_from_test_split():
    task = get_task("digits", **SMALL["digits"])
    xt, _ = task.split("test")
    rows = {r.numpy().tobytes() for r in xt}
    x, _ = task.sample(50, seed=2)  # = test size: a permutation, no repeats
    keys = [r.numpy().tobytes() for r in x]
    assert set(keys) <= rows and len(set(keys)) == len(set(rows))
    x, _ = task.sample(120, seed=2)  # more than the test split: with replacement
    assert {r.numpy().tobytes() for r in x} <= rows


# ---------------------------------------------------------------- disjoint splits


def test_digits_splits_disjoint_and_stratified():
    task = get_task("digits")
    idx = {w: task.split_indices(w) for w in ("train", "val", "test")}
    assert [len(v) for v in idx.values()] == [1297, 250, 250]
    sets = [set(v.tolist()) for v in idx.values()]
    assert len(sets[0] | sets[1] | sets[2]) == 1797
    counts = torch.bincount(task.split("test")[1], minlength=10)
    assert int(counts.min()) >= 24 and int(counts.max()) <= 26


def test_delay_splits_disjoint(delay_default):
    seen = set()
    sizes = []
    for _w, (x, _) in _all_splits(delay_default).items():
        keys = {r.numpy().tobytes() for r in x}
        sizes.append(len(keys))
        assert not keys & seen
        seen |= keys
    assert sizes == [4000, 500, 500]


def test_listops_splits_disjoint(listops_default):
    texts = {w: [listops_detokenize(r) for r in x] for w, (x, _) in _all_splits(listops_default).items()}
    assert [len(v) for v in texts.values()] == [20000, 1000, 1000]
    union = set().union(*texts.values())
    assert len(union) == 22000  # distinct within and across splits
    fresh, _ = listops_default.sample(200, seed=9)
    assert not {listops_detokenize(r) for r in fresh} & set(texts["train"])


# ---------------------------------------------------------------- targets


def test_delay_target_is_shifted_input():
    task = get_task("delay", L=256, lag=77, n_train=30, n_val=5, n_test=5)
    x, y = task.split("train")
    assert torch.equal(y[:, 77:], x[:, :-77]) and torch.all(y[:, :77] == 0)
    k = task.ideal_kernel()
    assert k.dtype == np.float64 and k.shape == (256,) and k[77] == 1.0 and k.sum() == 1.0
    for i in range(5):
        np.testing.assert_allclose(np.convolve(x[i, :, 0].numpy(), k)[:256], y[i, :, 0].numpy(), atol=1e-7)
    assert task.ideal_kernel(1000).shape == (1000,) and task.ideal_kernel(1000)[77] == 1.0
    with pytest.raises(ValueError):
        task.ideal_kernel(50)


def test_delay_noise_is_band_limited_unit_variance():
    task = get_task("delay", L=512, lag=10, band=0.25, n_train=40, n_val=5, n_test=5)
    x = task.split("train")[0][..., 0].double()
    torch.testing.assert_close(x.std(dim=1, unbiased=False), torch.ones(40, dtype=torch.float64), atol=1e-5, rtol=0)
    power = torch.fft.rfft(x, dim=1).abs() ** 2
    assert power[:, 65:].sum() < 1e-8 * power.sum()  # K = int(0.25 * 256) = 64 bins kept
    assert power[:, 0].max() < 1e-6 * power.sum()  # zero mean


def test_digits_inputs_are_upsampled_images():
    from sklearn.datasets import load_digits

    task = get_task("digits")
    x, y = task.split("train")
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    i = task.split_indices("train")[:5]
    d = load_digits()
    img = torch.tensor(d.images[i], dtype=torch.float32)[:, None] / 16
    up = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False).reshape(5, 1024)
    z = x[:5, :, 0]
    corr = [np.corrcoef(z[j].numpy(), up[j].numpy())[0, 1] for j in range(5)]
    assert min(corr) > 0.9999  # same pixels, row-major, up to the affine standardisation
    assert torch.equal(y[:5], torch.from_numpy(d.target[i]).long())


def test_listops_labels_match_reference(listops_default):
    p = listops_default.spec.params
    for w in ("val", "test"):
        x, y = listops_default.split(w)
        lengths = (x != 0).sum(1)
        assert int(lengths.min()) >= p["min_length"] and int(lengths.max()) <= p["L"]
        assert torch.all(x[torch.arange(p["L"]) >= lengths[:, None]] == 0)  # right-padded only
        assert [_reference_listops(listops_detokenize(r)) for r in x] == y.tolist()
    x, y = listops_default.split("train")
    assert [_reference_listops(listops_detokenize(r)) for r in x[:2000]] == y[:2000].tolist()


def test_listops_med_follows_lra_int_median():
    assert T._listops_value(2, [1, 5]) == 3 == int(np.median([1, 5]))
    assert T._listops_value(2, [2, 9, 0, 4]) == int(np.median([2, 9, 0, 4]))
    assert T._listops_value(2, [7, 1, 3]) == 3
    assert T._listops_value(3, [9, 8, 5]) == 2


def test_listops_detokenize():
    ids = [2, 6 + 2, 6 + 9, 1, 6 + 4, 6 + 7, 5, 6 + 0, 5, 0, 0]
    assert listops_detokenize(ids) == "[MAX 2 9 [MIN 4 7 ] 0 ]"
    assert listops_detokenize(torch.tensor(ids)) == listops_detokenize(np.array(ids))
    with pytest.raises(ValueError):
        listops_detokenize([3, 16])


# ---------------------------------------------------------------- loss, metric, baselines


def test_metrics_and_losses():
    d = get_task("delay", **SMALL["delay"])
    x, y = d.split("val")
    assert d.metric(y.clone(), y) == 0.0
    assert d.metric(torch.zeros_like(y), y) == 1.0
    garbage = y.clone()
    garbage[:, :40] = 5.0  # errors before the lag are not scored
    assert d.metric(garbage, y) == 0.0
    assert d.loss(torch.zeros_like(y), y).ndim == 0
    with pytest.raises(ValueError):
        d.metric(y[..., 0], y)

    c = get_task("digits", **SMALL["digits"])
    _, yc = c.split("val")
    logits = F.one_hot(yc, 10).float()
    assert c.metric(logits, yc) == 1.0
    assert c.loss(logits * 20, yc).item() < 1e-6
    with pytest.raises(ValueError):
        c.loss(logits[:, :5], yc)


def test_baselines(delay_default):
    assert delay_default.baseline() == 1.0
    assert 0.09 <= get_task("digits").baseline() <= 0.11
    task = get_task("listops", **SMALL["listops"])
    y = task.split("test")[1]
    assert task.baseline() == torch.bincount(y).max().item() / len(y)
    assert get_task("listops").ideal_kernel() is None and get_task("digits").ideal_kernel() is None


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, params",
    [
        ("nope", {}),
        ("delay", {"lag": 1024}),
        ("delay", {"L": 100, "lag": 100}),
        ("delay", {"lag": -1}),
        ("delay", {"L": 8}),
        ("delay", {"L": 2**20 + 1}),
        ("delay", {"n_train": -5}),
        ("delay", {"n_val": 0}),
        ("delay", {"band": 0.0}),
        ("delay", {"band": 1.5}),
        ("delay", {"L": 2**20}),  # 4000 x 2^20 floats: refused for memory
        ("delay", {"lag": 2.5}),
        ("delay", {"lag": True}),
        ("delay", {"lagg": 3}),
        ("digits", {"L": 1000}),
        ("digits", {"n_test": 5}),
        ("digits", {"n_val": 1000, "n_test": 790}),
        ("digits", {"n_train": 1500}),
        ("listops", {"L": 8}),
        ("listops", {"min_length": 600}),
        ("listops", {"max_depth": 2, "min_length": 40}),
        ("listops", {"max_args": 1}),
        ("listops", {"value_p": 1.2}),
        ("listops", {"n_test": -1}),
        ("listops", {"min_depth": 5}),                  # above max_depth 4
        ("listops", {"min_depth": 1}),                  # a bare digit is not an expression to evaluate
        ("listops", {"min_depth": 3, "max_depth": 2}),
        ("listops", {"min_depth": 2.5}),
        ("listops", {"min_depth": "3"}),
        ("listops", {"min_depth": 30, "max_depth": 40, "L": 64}),  # depth 30 needs >= 88 tokens
        ("listops", {"max_depth": 2}),                  # below the default min_depth 3
    ],
)
def test_bad_params_raise(name, params):
    with pytest.raises(ValueError):
        get_task(name, **params)


def test_bad_calls_raise():
    with pytest.raises(ValueError):
        get_task("delay", seed=-1)
    task = get_task("delay", **SMALL["delay"])
    with pytest.raises(ValueError):
        task.split("training")
    with pytest.raises(ValueError):
        task.sample(0, seed=1)
    with pytest.raises(ValueError, match="distinct"):  # too few distinct short expressions exist
        get_task("listops", min_depth=2, max_depth=2, max_args=2, min_length=4, n_train=500, n_val=1,
                 n_test=1).split("train")


# ---------------------------------------------------------------- listops depth range and old cards

# sha256 (first 16 hex digits) of x.numpy().tobytes() + y.numpy().tobytes() of each split of the listops task the
# cards before depth ranges describe (L=512, max_depth 4, min_length 32, seed 0), computed before the change.
_OLD_LISTOPS = {"train": "8b6ef79a5f5ec574", "val": "8cf9f31fd26feadd", "test": "39916e3e3ecdafe9"}
_OLD_LISTOPS_SAMPLE_50_SEED_1 = "cda1cc43ca0acaf1"
_OLD_LISTOPS_CARD = {"task": "listops", "task_params": {}, "task_seed": 0, "task_spec": {
    "name": "listops", "L": 512, "params": {"L": 512, "max_depth": 4, "max_args": 5, "min_length": 32,
                                            "value_p": 0.25, "n_train": 20000, "n_val": 1000, "n_test": 1000}}}


def _digest(x, y) -> str:
    import hashlib

    return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]


def _depth(tree) -> int:
    return 1 if isinstance(tree, int) else 1 + max(_depth(c) for c in tree[1])


def test_old_listops_cards_rebuild_their_exact_splits():
    from sgconv_core.tasks import task_from_card, task_params_from_card

    assert task_params_from_card(_OLD_LISTOPS_CARD)["min_depth"] is None
    task = task_from_card(_OLD_LISTOPS_CARD)
    assert task.spec.L == 512
    assert _digest(*task.split("test")) == _OLD_LISTOPS["test"]
    assert _digest(*task.split("val")) == _OLD_LISTOPS["val"]
    assert _digest(*task.split("train")) == _OLD_LISTOPS["train"]
    assert _digest(*task.sample(50, seed=1)) == _OLD_LISTOPS_SAMPLE_50_SEED_1
    # the same task spelled out by hand (old defaults given as parameters)
    by_hand = get_task("listops", L=512, min_length=32, min_depth=None)
    assert _digest(*by_hand.split("test")) == _OLD_LISTOPS["test"]
    # and the new default task is a different one
    assert _digest(*get_task("listops").split("test")) != _OLD_LISTOPS["test"]


def test_card_params_prefer_the_full_spec():
    from sgconv_core.tasks import task_from_card, task_params_from_card

    full = get_task("listops", L=64, n_train=200, n_val=20, n_test=20)
    card = {"task": "listops", "task_params": {"L": 64}, "task_spec": {"params": dict(full.spec.params)}}
    assert task_params_from_card(card) == full.spec.params
    assert _digest(*task_from_card(card).split("test")) == _digest(*full.split("test"))
    digits = {"task": "digits", "task_params": {}, "task_spec": {"params": {"L": 256, "side": 16, "n_train": 100,
                                                                            "n_val": 250, "n_test": 250}}}
    assert task_params_from_card(digits) == {"L": 256, "n_train": 100, "n_val": 250, "n_test": 250}  # no 'side'
    assert task_params_from_card({"task": "delay", "task_params": {"lag": 3}}) == {"lag": 3}  # no spec: as given
    with pytest.raises(ValueError, match="unknown task"):
        task_from_card({"task": "nope"})


def test_listops_default_depth_range_and_lengths():
    from sgconv_core.baselines import parse_listops
    from sgconv_core.tasks import _listops_max_length, _listops_min_length

    assert _listops_max_length(4, 5) == 187 <= get_task("listops").spec.L == 192
    assert [_listops_min_length(d) for d in (1, 2, 3, 4)] == [1, 4, 7, 10]
    task = get_task("listops")
    x, y = task.split("test")
    depths = np.array([_depth(parse_listops(r)) for r in x])
    counts = np.bincount(depths, minlength=6)
    assert counts[:3].sum() == 0 and counts[5:].sum() == 0
    assert 0.35 < counts[3] / len(depths) < 0.65  # both depths well represented
    lengths = (x > 0).sum(1)
    assert int(lengths.min()) >= 7 and int(lengths.max()) <= 187
    assert [_reference_listops(listops_detokenize(r)) for r in x] == y.tolist()


@pytest.mark.parametrize("lo, hi", [(2, 2), (2, 3), (4, 4), (3, 5)])
def test_listops_every_example_has_a_depth_in_the_range(lo, hi):
    from sgconv_core.baselines import parse_listops

    task = get_task("listops", min_depth=lo, max_depth=hi, L=512, n_train=300, n_val=20, n_test=300)
    x, _ = task.split("test")
    depths = {_depth(parse_listops(r)) for r in x}
    assert depths == set(range(lo, hi + 1))
    fresh, _ = task.sample(100, seed=3)
    assert {_depth(parse_listops(r)) for r in fresh} <= set(range(lo, hi + 1))
