"""RoundPlan loading and validation against the JSON Schema generated from the operator's zod schema."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

from .errors import PermanentError
from .s3io import S3, S3Settings


def schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("round_plan.schema.json").read_text())


def _field_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


def validate(plan: object) -> dict:
    """Return the plan if valid, else raise PermanentError naming the first offending field."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(plan), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        path = list(err.absolute_path)
        if err.validator == "required":
            # name the missing property itself, not its parent
            missing = [r for r in err.validator_value if isinstance(err.instance, dict) and r not in err.instance]
            if missing:
                path.append(missing[0])
        elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
            if extra:
                path.append(extra[0])
        raise PermanentError(f"invalid RoundPlan: {err.message}", _field_path(path))
    assert isinstance(plan, dict)
    if not plan["output"]["uri"].endswith("/"):
        raise PermanentError("must end with '/'", "output.uri")
    from .models import known_architecture  # late import: torch is heavy

    if not known_architecture(plan["model"]["architecture"]):
        raise PermanentError(f"unknown architecture {plan['model']['architecture']!r}", "model.architecture")
    return plan


def load(location: str) -> dict:
    """Read a plan from s3://... (endpoint from S3_ENDPOINT/AWS_REGION env) or a local path."""
    if location.startswith("s3://"):
        raw = S3(S3Settings.from_env()).get_bytes(location, field="--plan")
    else:
        try:
            with open(location, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise PermanentError(f"cannot read plan: {e}", "--plan") from e
    try:
        plan = json.loads(raw)
    except ValueError as e:
        raise PermanentError(f"plan is not JSON: {e}", "--plan") from e
    return validate(plan)
