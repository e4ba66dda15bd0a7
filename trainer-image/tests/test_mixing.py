"""Source weights: shards drawn with replacement, probability ~ weight x shard count per source."""
from helpers import make_plan, source
from ticclip_trainer.data import MixedStream, StreamState, shards_from_plan


def test_weights_3_to_1_give_near_3_to_1_counts(s3, bucket, slices):
    plan = make_plan(bucket, "runs/mix/rounds/0000", [source(bucket, "2016", slices["2016"], weight=3, share=0.75),
                                                      source(bucket, "2018", slices["2018"], weight=1, share=0.25)], 1)
    _, shards, weights = shards_from_plan(plan)
    stream = MixedStream(s3, shards, weights, seed=7)
    n, counts = 24000, [0, 0]
    it = stream.iterate(StreamState())
    for _ in range(n):
        src, _img, _txt, _st = next(it)
        counts[src] += 1
    share = counts[0] / n
    assert 0.68 < share < 0.82, counts


def test_stream_resumes_exactly(s3, bucket, slices):
    plan = make_plan(bucket, "x/", [source(bucket, "2016", slices["2016"]), source(bucket, "2017", slices["2017"])], 1)
    _, shards, weights = shards_from_plan(plan)
    stream = MixedStream(s3, shards, weights, seed=3)
    it = stream.iterate(StreamState())
    first = [next(it) for _ in range(400)]
    state = first[199][3]
    resumed = stream.iterate(state)
    again = [next(resumed) for _ in range(200)]
    assert [(s, t) for s, _i, t, _ in first[200:]] == [(s, t) for s, _i, t, _ in again]
    assert [i for _s, i, _t, _ in first[200:]] == [i for _s, i, _t, _ in again]
