"""The global batch is split over the ranks and the steps add up to exactly the budget (no S3)."""

import random

import pytest

from ticclip_trainer.errors import PermanentError
from ticclip_trainer.train import step_sizes


@pytest.mark.parametrize(
    "budget,batch,world,want",
    [
        (640, 32, 1, [[32]] * 20),
        (100, 32, 1, [[32]] * 3 + [[4]]),
        (128, 64, 2, [[32, 32]] * 2),
        (130, 64, 2, [[32, 32]] * 2 + [[1, 1]]),
        (129, 64, 2, [[32, 32], [33, 32]]),  # a remainder smaller than the world joins the last step
        (10, 4, 3, [[2, 1, 1], [2, 2, 2]]),
    ],
)
def test_step_sizes_split_the_global_batch(budget, batch, world, want):
    assert step_sizes(budget, batch, world)[: len(want)] == want


def test_step_sizes_add_up_to_the_budget_for_random_shapes():
    rng = random.Random(0)
    for _ in range(500):
        world = rng.randint(1, 16)
        batch = rng.randint(world, 512)
        budget = rng.randint(world, 20000)
        steps = step_sizes(budget, batch, world)
        assert sum(map(sum, steps)) == budget
        assert all(len(s) == world and min(s) >= 1 and max(s) - min(s) <= 1 for s in steps)
        assert all(sum(s) == batch for s in steps[:-2])


def test_step_sizes_reject_a_batch_or_budget_smaller_than_the_world():
    with pytest.raises(PermanentError, match="optimizer.batchSize"):
        step_sizes(100, 4, 8)
    with pytest.raises(PermanentError, match="data.samples"):
        step_sizes(4, 8, 8)
