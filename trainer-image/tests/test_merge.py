"""Weight-space merging (merge.py, the plan's `merge`): the math on the tiny model, the plan's checks
(exit 2), the checkpoint round trip, and merged rounds end to end on the S3 server (raw/ beside the
merge, EMA training on from raw/, the optimizer state carried, the constant-then-anneal schedule)."""

import math
import os

import pytest
import torch
from helpers import get_json, make_plan, source, train_in_process, write_plan

from ticclip_trainer import checkpoints, models
from ticclip_trainer.errors import PermanentError
from ticclip_trainer.merge import MergeSetting, interpolate, merge_into, raw_beside, round_dir_of
from ticclip_trainer.train import lr_schedule, make_optimizer, weights_digest

ARCH = "ticclip-tiny"


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.create(ARCH)


def _close(a: dict, b: dict, tol: float = 1e-6) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=tol) for k in a)


def test_coefficient_0_is_the_base_1_the_trained_and_between_is_linear():
    base, trained = _model(0).state_dict(), _model(1).state_dict()
    assert _close(interpolate(base, trained, 0.0), base)
    assert _close(interpolate(base, trained, 1.0), trained)
    half = interpolate(base, trained, 0.5)
    k = next(k for k, t in base.items() if t.is_floating_point() and t.numel() > 1)
    assert torch.allclose(half[k], (base[k] + trained[k]) / 2, atol=1e-6)
    assert not _close(half, base) and not _close(half, trained)


def test_integer_buffers_come_from_the_trained_model():
    base = {"w": torch.zeros(3), "n": torch.tensor([1, 2, 3])}
    trained = {"w": torch.ones(3), "n": torch.tensor([7, 8, 9])}
    out = interpolate(base, trained, 0.25)
    assert torch.allclose(out["w"], torch.full((3,), 0.25))
    assert out["n"].tolist() == [7, 8, 9]


def test_mismatched_keys_or_shapes_are_a_bad_checkpoint():
    with pytest.raises(PermanentError):
        interpolate({"a": torch.zeros(2)}, {"b": torch.zeros(2)}, 0.5)
    with pytest.raises(PermanentError):
        interpolate({"a": torch.zeros(2)}, {"a": torch.zeros(3)}, 0.5)


def test_ema_over_rounds_weights_round_k_by_c_times_1_minus_c_to_the_rounds_after():
    c = 0.3
    rounds = [{"w": torch.tensor([float(10**i)])} for i in range(4)]
    ema = rounds[0]
    for r in rounds[1:]:
        ema = interpolate(ema, r, c)
    expected = (1 - c) ** 3 * 1 + c * (1 - c) ** 2 * 10 + c * (1 - c) * 100 + c * 1000
    assert math.isclose(ema["w"].item(), expected, rel_tol=1e-6)


def test_merge_into_replaces_the_weights_and_reports_its_cost():
    model, base = _model(1), _model(0).state_dict()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    cost = merge_into(model, base, 0.25)
    assert _close(model.state_dict(), interpolate(base, trained, 0.25))
    nbytes = sum(t.numel() * t.element_size() for t in base.values())
    assert cost["extraBytes"] == 2 * nbytes and cost["seconds"] >= 0 and cost["peakRssBytes"] > 0


def test_merged_checkpoint_round_trip(tmp_path):
    """The merge saved as export_model saves checkpoint.pt loads back (checkpoints.load_initial) bit for bit."""
    model = _model(1)
    merge_into(model, _model(0).state_dict(), 0.5)
    path = os.path.join(tmp_path, "checkpoint.pt")
    torch.save({"epoch": 1, "name": "r-0001", "state_dict": model.state_dict()}, path)
    again = models.create(ARCH)
    checkpoints.load_initial(again, ARCH, checkpoints.LocalCheckpoint(path, "s3://b/r/checkpoint.pt", None, False))
    assert weights_digest(again) == weights_digest(model)


def _plan(merge=None, init="s3://b/runs/r/rounds/0000/checkpoint.pt") -> dict:
    plan = {"model": {"architecture": ARCH, "initCheckpoint": init}}
    return {**plan, **({"merge": merge} if merge is not None else {})}


@pytest.mark.parametrize(
    ("merge", "init", "field"),
    [
        ({"mode": "Average", "coefficient": 0.5}, "s3://b/c.pt", "merge.mode"),
        ({"mode": "EMA", "coefficient": 0}, "s3://b/c.pt", "merge.coefficient"),
        ({"mode": "EMA", "coefficient": 1.5}, "s3://b/c.pt", "merge.coefficient"),
        ({"mode": "EMA", "coefficient": True}, "s3://b/c.pt", "merge.coefficient"),
        ({"mode": "Interpolate", "coefficient": 0.5}, None, "merge"),
    ],
)
def test_a_bad_merge_is_a_bad_plan(merge, init, field):
    with pytest.raises(PermanentError) as e:
        MergeSetting.from_plan(_plan(merge, init))
    assert e.value.exit_code == 2 and e.value.field == field


def test_no_merge_and_a_good_one():
    assert MergeSetting.from_plan(_plan()) is None
    assert MergeSetting.from_plan(_plan({"mode": "EMA", "coefficient": 1})) == MergeSetting("EMA", 1.0)


def test_raw_weights_live_beside_a_rounds_checkpoint_only():
    assert round_dir_of("s3://b/r/rounds/0003/checkpoint.pt") == "s3://b/r/rounds/0003/"
    assert round_dir_of("s3://b/r/rounds/0003/raw/checkpoint.pt") == "s3://b/r/rounds/0003/"
    assert raw_beside("s3://b/r/rounds/0003/checkpoint.pt") == "s3://b/r/rounds/0003/raw/checkpoint.pt"
    assert raw_beside("s3://b/r/rounds/0003/raw/checkpoint.pt") is None
    assert raw_beside("s3://b/models/vit.safetensors") is None


def test_constant_then_anneal_holds_the_lr_then_anneals_to_zero():
    model = _model(0)
    opt = make_optimizer(model, {"model": {"architecture": ARCH}, "optimizer": {"lr": 1e-3, "weightDecay": 0.1}})
    sched = lr_schedule(
        opt, {"lr": 1e-3, "warmupSteps": 0, "schedule": "ConstantThenAnneal", "annealFraction": 0.25}, 8
    )
    lrs = [sched(s) for s in range(8)]
    # open_clip's const_lr_cooldown: the anneal's first step still has the full lr, then linear to 0.
    assert lrs[:7] == [1e-3] * 7 and math.isclose(lrs[7], 0.5e-3)
    cosine = lr_schedule(opt, {"lr": 1e-3, "warmupSteps": 0}, 8)
    assert cosine(1) < 1e-3  # absent schedule: the cosine cycle as before


# ---- on the S3 server ----

BUDGET = 256


@pytest.fixture(scope="module")
def round0(s3, bucket, slices, tmp_path_factory):
    plan = make_plan(bucket, "merge/rounds/0000", [source(bucket, "2016", slices["2016"])], BUDGET, lr=5e-3)
    plan["optimizer"]["state"] = "Carry"
    assert train_in_process(write_plan(tmp_path_factory.mktemp("m0"), plan)) == 0
    return plan


def _round1(bucket, slices, round0, mode, tmp_path, name):
    init = round0["output"]["uri"] + "checkpoint.pt"
    plan = make_plan(
        bucket, f"merge-{name}/rounds/0001", [source(bucket, "2017", slices["2017"])], BUDGET, init=init, round_=1
    )
    plan["merge"] = {"mode": mode, "coefficient": 0.5}
    plan["optimizer"].update({"state": "Carry", "schedule": "ConstantThenAnneal", "annealFraction": 0.5})
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    return plan


def _weights(s3, uri, tmp_path, name):
    s3.download(uri, str(tmp_path / name))
    return torch.load(tmp_path / name, weights_only=True)["state_dict"]


def test_a_merged_round_exports_the_merge_and_keeps_the_trained_weights_in_raw(s3, bucket, slices, round0, tmp_path):
    plan = _round1(bucket, slices, round0, "Interpolate", tmp_path, "interp")
    out = plan["output"]["uri"]
    for name in ("raw/checkpoint.pt", "raw/model.json", "raw/image_encoder.onnx", "optimizer.pt", "_SUCCESS"):
        assert s3.exists(out + name), name
    base = _weights(s3, plan["model"]["initCheckpoint"], tmp_path, "base.pt")
    raw = _weights(s3, out + "raw/checkpoint.pt", tmp_path, "raw.pt")
    merged = _weights(s3, out + "checkpoint.pt", tmp_path, "merged.pt")
    assert _close(merged, interpolate(base, raw, 0.5), tol=1e-5)
    summary = get_json(s3, out + "train_summary.json")
    m = summary["merge"]
    assert (
        m["mode"] == "Interpolate" and m["coefficient"] == 0.5 and m["trainedFrom"] == plan["model"]["initCheckpoint"]
    )
    assert m["seconds"] >= 0 and m["extraBytes"] > 0 and m["raw"]["uri"] == out + "raw/"
    assert summary["finalWeightsDigest"] != m["raw"]["weightsDigest"]
    assert summary["config"]["optimizerStateFrom"] == round0["output"]["uri"] + "optimizer.pt"
    assert summary["config"]["scheduler"] == "ConstantThenAnneal"


def test_ema_trains_on_from_the_raw_weights_beside_its_init(s3, bucket, slices, round0, tmp_path):
    first = _round1(bucket, slices, round0, "EMA", tmp_path, "ema")
    # Round 0 did not merge: no raw/ beside it, so round 1 trained from the init itself.
    assert (
        get_json(s3, first["output"]["uri"] + "train_summary.json")["merge"]["trainedFrom"]
        == (first["model"]["initCheckpoint"])
    )
    init = first["output"]["uri"] + "checkpoint.pt"
    plan = make_plan(
        bucket, "merge-ema/rounds/0002", [source(bucket, "2018", slices["2018"])], BUDGET, init=init, round_=2
    )
    plan["merge"] = {"mode": "EMA", "coefficient": 0.5}
    assert train_in_process(write_plan(tmp_path, plan, "p2.json")) == 0
    summary = get_json(s3, plan["output"]["uri"] + "train_summary.json")
    assert summary["merge"]["trainedFrom"] == first["output"]["uri"] + "raw/checkpoint.pt"
    assert summary["merge"]["base"] == init
