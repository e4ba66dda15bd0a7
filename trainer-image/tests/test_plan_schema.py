"""The generated RoundPlan JSON Schema accepts the plans the tests build and rejects broken ones."""

import jsonschema
import pytest
from helpers import make_plan

from ticclip_trainer import plan as plan_mod
from ticclip_trainer.errors import PermanentError


def _plan():
    src = {
        "sliceId": "2016",
        "weight": 1,
        "expectedShare": 1,
        "shards": [{"uri": "s3://bkt/slices/2016/shard-00000.tar", "samples": 10}],
    }
    return make_plan("bkt", "runs/r/rounds/0000", [src], 10, endpoint="http://127.0.0.1:19000")


def test_schema_validates_helper_plan():
    schema = plan_mod.schema()
    assert schema["$schema"].endswith("2020-12/schema")
    jsonschema.Draft202012Validator(schema).validate(_plan())
    assert plan_mod.validate(_plan())["round"] == 0


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda p: p.pop("seed"), "seed"),
        (lambda p: p["data"].update(samples="many"), "data.samples"),
        (lambda p: p["optimizer"].update(precision="fp8"), "optimizer.precision"),
        (lambda p: p["output"].update(uri="http://not-s3/"), "output.uri"),
        (lambda p: p["output"].update(uri="s3://bkt/rounds/0000"), "output.uri"),
        (lambda p: p.update(extra=1), "extra"),
        (lambda p: p["data"]["sources"][0]["shards"][0].pop("samples"), "data.sources[0].shards[0].samples"),
    ],
)
def test_invalid_plans_name_the_field(mutate, field):
    p = _plan()
    mutate(p)
    with pytest.raises(PermanentError) as e:
        plan_mod.validate(p)
    assert e.value.field == field, str(e.value)
