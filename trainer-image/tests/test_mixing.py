"""Sample streams: mixture weights, slices mixed within batches, exact positions (real S3 server)."""

import pytest
from helpers import make_plan, source

from ticclip_trainer.data import RoundBatches, SampleStream, StreamConfig, StreamState, make_loader, shards_from_plan
from ticclip_trainer.preprocess import Preprocessing
from ticclip_trainer.s3io import S3Settings


def _shards(bucket, slices, weights):
    srcs = [source(bucket, sid, slices[sid], weight=w) for sid, w in weights.items()]
    _, shards, ws = shards_from_plan(make_plan(bucket, "x/", srcs, 1))
    return shards, ws


def test_stream_weights_3_to_1_give_near_3_to_1_counts(s3, bucket, slices):
    shards, weights = _shards(bucket, slices, {"2016": 3, "2018": 1})  # 8 shards each
    draws, samples = [0, 0], [0, 0]
    for stream_id in range(4):
        stream = SampleStream(s3, shards, weights, seed=7, rank=0, stream=stream_id, cfg=StreamConfig(4, 8, 512))
        for k in range(5000):
            draws[shards[stream.draw(k)].source] += 1
        it = stream.samples(stream.initial_state())
        for _ in range(3000):
            samples[shards[next(it)[0]].source] += 1
    assert 0.735 < draws[0] / sum(draws) < 0.765, draws  # 20000 draws: sd 0.3%
    assert 0.6 < samples[0] / sum(samples) < 0.9, samples  # 12000 samples are only ~80 shard draws


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_of_two_equal_slices_mostly_hold_both(s3, bucket, slices, workers):
    shards, weights = _shards(bucket, slices, {"2016": 1, "2017": 1})
    cfg = StreamConfig(2, 8, 2048)
    sizes = [64] * 60
    batches = RoundBatches(
        S3Settings.from_env(),
        shards,
        weights,
        2,
        Preprocessing.for_model("ticclip-tiny"),
        0,
        0,
        sizes,
        0,
        [StreamState.initial(8)] * 2,
        cfg,
    )
    got = list(make_loader(batches, workers, pin_memory=False))
    assert [b["step"] for b in got] == list(range(60))
    both = sum(1 for b in got if min(b["counts"]) > 0)
    assert both >= 0.9 * len(got), [b["counts"] for b in got]
    assert sum(sum(b["counts"]) for b in got) == 64 * 60


def test_stream_resumes_exactly_from_any_position(s3, bucket, slices):
    shards, weights = _shards(bucket, slices, {"2016": 1, "2017": 1})
    stream = SampleStream(s3, shards, weights, seed=3, rank=0, stream=1, cfg=StreamConfig(2, 3, 100))
    it = stream.samples(stream.initial_state())
    first = [next(it) for _ in range(700)]  # several windows, shards ended and replaced mid-window
    assert len({shards[s[0]].uri for s in first}) > 3
    for cut in (0, 37, 99, 100, 150, 399, 650):
        state = StreamState.from_json(first[cut][3].to_json())  # through the checkpoint's JSON form
        resumed = stream.samples(state)
        again = [next(resumed) for _ in range(700 - cut - 1)]
        assert [s[:3] for s in again] == [s[:3] for s in first[cut + 1 :]], cut


def test_streams_differ_by_rank_and_stream(s3, bucket, slices):
    shards, weights = _shards(bucket, slices, {"2016": 1, "2017": 1})
    ids = set()
    for rank, sid in ((0, 0), (0, 1), (1, 0)):
        stream = SampleStream(s3, shards, weights, seed=3, rank=rank, stream=sid, cfg=StreamConfig(2, 4, 64))
        it = stream.samples(stream.initial_state())
        ids.add(tuple(next(it)[:2] for _ in range(64)))
    assert len(ids) == 3
