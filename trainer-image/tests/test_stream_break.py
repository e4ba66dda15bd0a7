"""S3 streams that break mid-shard are reopened at their offset: a proxy on loopback in front of the
real S3 server resets every connection after 100 KB of response (shards are ~320 KB)."""

import os

import pytest
from helpers import get_json, make_plan, source, train_in_process, write_plan
from proxy import CuttingProxy

from ticclip_trainer.s3io import S3, S3Settings


@pytest.fixture
def proxy(tmp_path):
    p = CuttingProxy(os.environ["S3_ENDPOINT"], cut_after=100_000, count_file=str(tmp_path / "cuts"))
    yield p
    p.close()


def test_range_reader_reads_whole_shards_through_broken_connections(s3, bucket, slices, proxy):
    broken = S3(S3Settings(region="us-east-1", endpoint=proxy.url))
    for sh in slices["2016"]["shards"][:3]:
        uri = f"s3://{bucket}/slices/2016/{sh['key']}"
        with broken.open_stream(uri, "f", retries=8) as f:
            got = f.read()
        assert got == s3.get_bytes(uri)
    assert proxy.cuts >= 6


def test_round_through_broken_connections_sees_the_same_samples(s3, bucket, slices, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "2")
    srcs = [source(bucket, "2016", slices["2016"]), source(bucket, "2019", slices["2019"])]
    direct = make_plan(bucket, "runs/break-direct/rounds/0000", srcs, 192, batch=32)
    cut = make_plan(bucket, "runs/break-cut/rounds/0000", srcs, 192, batch=32, endpoint=proxy.url)
    assert train_in_process(write_plan(tmp_path, direct, "direct.json")) == 0
    assert train_in_process(write_plan(tmp_path, cut, "cut.json")) == 0
    assert proxy.cuts > 0
    a = get_json(s3, direct["output"]["uri"] + "train_summary.json")
    b = get_json(s3, cut["output"]["uri"] + "train_summary.json")
    assert b["samplesSeen"] == 192
    assert b["dataDigests"] == a["dataDigests"] and b["samplesPerSource"] == a["samplesPerSource"]
    assert b["finalWeightsDigest"] == a["finalWeightsDigest"]
