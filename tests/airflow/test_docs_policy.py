"""docs/iam-policy-airflow.json: valid, and exactly the access the Airflow side needs."""

from __future__ import annotations

import json
from pathlib import Path

POLICY = Path(__file__).resolve().parents[2] / "docs" / "iam-policy-airflow.json"


def test_policy_is_least_privilege_for_the_stack() -> None:
    policy = json.loads(POLICY.read_text())
    granted = {
        (action, resource)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
    }
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    assert not any("*" in action for action, _ in granted)  # no wildcard actions
    parameter = "arn:aws:ssm:${AWS_REGION}:${ACCOUNT_ID}:parameter/handoff/${STACK}/*"
    objects = "arn:aws:s3:::${BUCKET}/${STACK}/*"
    assert {a for a, r in granted if r == parameter} == {"ssm:GetParameter", "ssm:PutParameter"}
    assert {a for a, r in granted if r == objects} == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    (listing,) = [s for s in policy["Statement"] if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["${STACK}/*"]
    (kms,) = [s for s in policy["Statement"] if any(a.startswith("kms:") for a in s["Action"])]
    assert set(kms["Condition"]["StringEquals"]["kms:ViaService"]) == {
        "ssm.${AWS_REGION}.amazonaws.com",
        "s3.${AWS_REGION}.amazonaws.com",
    }
