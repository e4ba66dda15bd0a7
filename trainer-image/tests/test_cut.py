"""cut-slices: one img2dataset pool whose samples span years becomes one slice per year (by a .json
field, or by per-slice key lists as TiC-DataComp ships them), members copied byte for byte; a round
trains on a cut slice."""

import io
import json
import tarfile

import numpy as np
from helpers import get_json, make_plan, train_in_process, write_plan
from img2dataset import BAD, sample, write_pool
from test_register import plan_source

from ticclip_trainer.cli import main
from ticclip_trainer.cut import cut, slice_of_value
from ticclip_trainer.data import held_out

YEARS = ["2014", "2015", "2016"]


def _pool():
    """2 shards x 60 samples; sample i is of year YEARS[i % 3] (dates in several spellings), a few
    without a date, one without a caption; uid in the .json as DataComp has it."""
    shards = []
    for s in range(2):
        shard = []
        for i in range(60):
            parts = sample(s * 100 + i)
            meta = json.loads(parts["json"])
            y = YEARS[i % 3]
            meta["date"] = [int(y), y, f"{y}-06-01", f"{y}-06-01T12:00:00Z"][i % 4] if i % 20 != 19 else None
            meta["uid"] = f"{s:016x}{i:016x}"
            parts["json"] = json.dumps(meta).encode()
            shard.append(parts)
        shard.append(BAD["noCaption"](s))
        shards.append(shard)
    return shards


def _expected(by):
    out = {y: 0 for y in YEARS}
    for i in list(range(60)) * 2:
        if by == "field" and i % 20 == 19:
            continue
        out[YEARS[i % 3]] += 1
    return out


def test_slice_of_value():
    assert slice_of_value(2014) == slice_of_value("2014") == slice_of_value("2014-05-03T10:00:00Z") == "2014"
    assert slice_of_value("2014-05-03", "month") == "2014-05" and slice_of_value("2014-05-03", "day") == "2014-05-03"
    assert slice_of_value("2014", "month") is None and slice_of_value(None) is None and slice_of_value("n/a") is None


def test_cut_by_date_field_copies_members_and_trains(s3, bucket, tmp_path):
    write_pool(f"s3://{bucket}/cutpool/", _pool(), s3)
    report = cut(f"s3://{bucket}/cutpool/", f"s3://{bucket}/cut/", by_field="date", shard_size=25, s3=s3)
    assert {k: v["samples"] for k, v in report["slices"].items()} == _expected("field")
    assert report["unassigned"] == 6 and report["dropped"] == {"noCaption": 2}
    m = get_json(s3, f"s3://{bucket}/cut/2015/manifest.json")
    assert m["numSamples"] == _expected("field")["2015"] and [s["samples"] for s in m["shards"]] == [25, 13]
    assert s3.exists(f"s3://{bucket}/cut/2015/_SUCCESS")
    # Byte for byte: the first 2015 sample's members are the pool's.
    with tarfile.open(fileobj=io.BytesIO(s3.get_bytes(f"s3://{bucket}/cut/2015/shard-00000.tar"))) as t:
        first = {m.name: t.extractfile(m).read() for m in t.getmembers()[:3]}
    pool0 = _pool()[0][1]
    assert first == {f"000000001.{e}": pool0[e] for e in ("jpg", "json", "txt")}
    summary = _train(s3, bucket, tmp_path, plan_source(bucket, "cut/2015/", m))
    assert summary["samplesSeen"] == 64 and summary["skippedSamples"]["total"] == 0


def _train(s3, bucket, tmp_path, src):
    plan = make_plan(bucket, "runs/cut/rounds/0000", [src], 64)
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    return get_json(s3, plan["output"]["uri"] + "train_summary.json")


def test_cut_by_uid_lists_with_held_out_split(s3, bucket, tmp_path):
    write_pool(f"s3://{bucket}/cutpool2/", _pool(), s3)
    lists = tmp_path / "splits"
    lists.mkdir()
    uids = {y: [] for y in YEARS}
    for s in range(2):
        for i in range(60):
            uids[YEARS[i % 3]].append((s, i))
    # TiC-DataComp style: uids as two uint64 halves (.npy) for two years, plain text for the third.
    for y in YEARS[:2]:
        np.save(lists / f"{y}.npy", np.array(uids[y], dtype=[("a", "<u8"), ("b", "<u8")]))
    (lists / f"{YEARS[2]}.txt").write_text("\n".join(f"{s:016x}{i:016x}" for s, i in uids[YEARS[2]]))
    rc = main(
        [
            "cut-slices",
            "--pool",
            f"s3://{bucket}/cutpool2/",
            "--out",
            f"s3://{bucket}/cut2/",
            "--key-lists",
            str(lists),
            "--key-field",
            "uid",
            "--eval-fraction",
            "0.2",
            "--eval-pack-architecture",
            "ticclip-tiny",
        ]
    )
    assert rc == 0
    for y in YEARS:
        m = get_json(s3, f"s3://{bucket}/cut2/{y}/manifest.json")
        keys = [f"{s:05d}{i:04d}" for s, i in uids[y]]  # img2dataset's keys: shard and url index
        held = sum(held_out(k, 0.2) for k in keys)
        assert m["numSamples"] == 40 - held and m["eval"] == {"retrieval": "eval/"}, y
        assert "heldOutFraction" not in m  # held-out samples are not in the training shards at all
        assert get_json(s3, f"s3://{bucket}/cut2/{y}/eval/pack.json")["sliceId"] == y
