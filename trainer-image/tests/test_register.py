"""register-shards: img2dataset output (made here in its exact layout) becomes a slice in place on
MinIO, read through _stats.json or ranged reads of the tar headers, and a round trains on it."""

import json

import pytest
from helpers import get_json, make_plan, train_in_process, write_plan
from img2dataset import BAD, sample, write_pool

from ticclip_trainer.cli import main
from ticclip_trainer.data import held_out
from ticclip_trainer.register import register

SHARDS, PER_SHARD = 3, 40


def _pool(n_shards=SHARDS, per_shard=PER_SHARD, px=96, **kw):
    return [[sample(s * 1000 + i, px=px, **kw) for i in range(per_shard)] for s in range(n_shards)]


def plan_source(bucket: str, folder: str, manifest: dict) -> dict:
    """What the operator's planner puts in a RoundPlan for this one slice."""
    src = {
        "sliceId": manifest["sliceId"],
        "weight": 1,
        "expectedShare": 1,
        "shards": [{"uri": f"s3://{bucket}/{folder}{s['key']}", "samples": s["samples"]} for s in manifest["shards"]],
    }
    for k in ("jsonCaptionField", "heldOutFraction"):
        if k in manifest:
            src[k] = manifest[k]
    return src


def _train(s3, bucket, tmp_path, src, out, samples=96, max_skipped=None):
    plan = make_plan(bucket, out, [src], samples)
    if max_skipped is not None:
        plan["data"]["maxSkippedFraction"] = max_skipped
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    return get_json(s3, plan["output"]["uri"] + "train_summary.json")


def test_img2dataset_shards_with_stats_register_from_stats_and_train(s3, bucket, tmp_path):
    write_pool(f"s3://{bucket}/pool-stats/2021/", _pool(), s3, failed=5)  # gaps in the keys, as failed urls leave
    report = register(f"s3://{bucket}/pool-stats/2021/", s3=s3)
    assert report["countsFrom"] == {"stats": SHARDS}
    assert report["samples"] == SHARDS * PER_SHARD and report["shards"] == SHARDS
    assert report["read"]["bytesPerShard"] < 20 * 1024  # the stats and the first sample's headers, not the shard
    assert report["read"]["shareOfShardBytes"] < 0.2
    m = get_json(s3, f"s3://{bucket}/pool-stats/2021/manifest.json")
    assert m["sliceId"] == "2021" and m["numSamples"] == SHARDS * PER_SHARD and "eval" not in m
    sizes = {k.rsplit("/", 1)[-1]: v for k, v in _sizes(s3, f"s3://{bucket}/pool-stats/2021/").items()}
    assert [(s["key"], s["samples"], s["bytes"]) for s in m["shards"]] == [
        (f"{i:05d}.tar", PER_SHARD, sizes[f"{i:05d}.tar"]) for i in range(SHARDS)
    ]
    assert s3.exists(f"s3://{bucket}/pool-stats/2021/_SUCCESS")
    summary = _train(s3, bucket, tmp_path, plan_source(bucket, "pool-stats/2021/", m), "runs/reg-stats/rounds/0000")
    assert summary["samplesSeen"] == 96 and summary["skippedSamples"]["total"] == 0


def _sizes(s3, prefix):
    bucket, key = prefix[5:].split("/", 1)
    return {o["Key"]: o["Size"] for o in s3.client.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]}


def test_without_stats_the_parquet_counts_else_the_headers_walked_with_ranged_reads(s3, bucket):
    write_pool(f"s3://{bucket}/pool-nostats/2021/", _pool(px=384), s3, stats=False, failed=4)  # ~7 KiB JPEGs
    report = register(f"s3://{bucket}/pool-nostats/2021/", s3=s3)
    assert report["countsFrom"] == {"parquet": SHARDS} and report["samples"] == SHARDS * PER_SHARD
    assert report["read"]["requestsPerShard"] <= 4 and report["read"]["shareOfShardBytes"] < 0.05, report["read"]
    for i in range(SHARDS):
        s3.delete(f"s3://{bucket}/pool-nostats/2021/{i:05d}.parquet")
    s3.delete(f"s3://{bucket}/pool-nostats/2021/manifest.json")
    s3.delete(f"s3://{bucket}/pool-nostats/2021/_SUCCESS")
    report = register(f"s3://{bucket}/pool-nostats/2021/", window=4096, s3=s3)
    assert report["countsFrom"] == {"headers": SHARDS} and report["samples"] == SHARDS * PER_SHARD
    assert report["read"]["shareOfShardBytes"] < 0.6, report["read"]  # the images are jumped over
    assert report["read"]["requestsPerShard"] < 1.5 * PER_SHARD, report["read"]
    write_pool(f"s3://{bucket}/pool-whole/2021/", _pool(px=384), s3, stats=False)
    whole = register(f"s3://{bucket}/pool-whole/2021/", count_from="headers", read="whole", s3=s3)
    assert whole["samples"] == SHARDS * PER_SHARD and whole["read"]["requestsPerShard"] == 1
    assert whole["read"]["shareOfShardBytes"] == 1.0
    # A _stats.json that cannot be right (more successes than the tar can hold) is not trusted.
    s3.put_bytes(
        f"s3://{bucket}/pool-badstats/2021/00000_stats.json", json.dumps({"count": 9000, "successes": 9000}).encode()
    )
    write_pool(f"s3://{bucket}/pool-badstats/2021/", _pool(1), s3, stats=False)
    s3.put_bytes(f"s3://{bucket}/pool-badstats/2021/00000.parquet", b"not a parquet file")
    report = register(f"s3://{bucket}/pool-badstats/2021/", s3=s3)
    assert report["countsFrom"] == {"headers": 1} and report["samples"] == PER_SHARD
    assert "cannot hold 9000 samples" in report["notes"][0]


def test_captions_only_in_json_bad_samples_and_foreign_members(s3, bucket, tmp_path):
    shard = [sample(i, txt=False, caption_field="text") for i in range(PER_SHARD)]
    shard[3]["cls"] = b"7"  # a member the trainer does not read
    shard.insert(5, BAD["noImage"](0))
    shard.insert(9, BAD["noCaption"](1))
    write_pool(f"s3://{bucket}/pool-json/2022/", [shard], s3, stats=False)
    # The parquet would count 42 successes: only the headers see what the trainer will skip.
    report = register(f"s3://{bucket}/pool-json/2022/", caption_field="text", count_from="headers", s3=s3)
    assert report["samples"] == PER_SHARD
    assert report["withoutImage"] == 1 and report["withoutCaption"] == 1
    assert report["foreignMembers"] == {"cls": 1}
    m = get_json(s3, f"s3://{bucket}/pool-json/2022/manifest.json")
    assert m["jsonCaptionField"] == "text"
    src = plan_source(bucket, "pool-json/2022/", m)
    summary = _train(s3, bucket, tmp_path, src, "runs/reg-json/rounds/0000", 64, max_skipped=0.1)
    assert summary["samplesSeen"] == 64
    assert set(summary["skippedSamples"]["byReason"]) <= {"noImage", "noCaption"}


def test_held_out_split_by_key_hash_eval_pack_and_a_round_that_never_sees_it(s3, bucket, tmp_path):
    write_pool(f"s3://{bucket}/pool-eval/2023/", _pool(), s3)
    # Through the command line, as the guide runs it.
    rc = main(
        [
            "register-shards",
            "--shards",
            f"s3://{bucket}/pool-eval/2023/",
            "--eval-fraction",
            "0.1",
            "--eval-pack-architecture",
            "ticclip-tiny",
        ]
    )
    assert rc == 0
    m = get_json(s3, f"s3://{bucket}/pool-eval/2023/manifest.json")
    keys = [f"{s:05d}{i:04d}" for s in range(SHARDS) for i in range(PER_SHARD)]
    held = [k for k in keys if held_out(k, 0.1)]
    assert 0 < len(held) < len(keys) // 4
    assert m["heldOutFraction"] == 0.1 and m["eval"] == {"retrieval": "eval/"}
    assert m["numSamples"] == len(keys) - len(held)
    ev = get_json(s3, f"s3://{bucket}/pool-eval/2023/eval/manifest.json")
    assert ev["numSamples"] == len(held)
    pack = get_json(s3, f"s3://{bucket}/pool-eval/2023/eval/pack.json")
    assert pack["kind"] == "retrieval" and pack["sliceId"] == "2023"
    summary = _train(s3, bucket, tmp_path, plan_source(bucket, "pool-eval/2023/", m), "runs/reg-eval/rounds/0000", 128)
    sk = summary["skippedSamples"]
    assert summary["samplesSeen"] == 128 and sk["total"] == 0 and sk["heldOutPassedOver"] > 0


def test_local_folder_and_refusals(tmp_path, capfd):
    folder = tmp_path / "2020"
    write_pool(str(folder), _pool(2, 10))
    report = register(str(folder))
    assert report["samples"] == 20 and (folder / "_SUCCESS").exists()
    assert json.loads((folder / "manifest.json").read_text())["shards"][1]["key"] == "00001.tar"
    assert main(["register-shards", "--shards", str(folder)]) == 2  # a slice already: slices never change
    assert "is a slice already" in capfd.readouterr().err
    bad = tmp_path / "not a slice id"
    write_pool(str(bad), _pool(1, 5))
    assert main(["register-shards", "--shards", str(bad)]) == 2
    assert "--slice-id" in capfd.readouterr().err


@pytest.mark.parametrize("count_from", ["headers"])
def test_forced_header_count_agrees_with_stats(s3, bucket, count_from):
    write_pool(f"s3://{bucket}/pool-agree/2024/", _pool(2, 25), s3, failed=3)
    report = register(f"s3://{bucket}/pool-agree/2024/", count_from=count_from, s3=s3)
    assert report["countsFrom"] == {"headers": 2} and report["samples"] == 50
