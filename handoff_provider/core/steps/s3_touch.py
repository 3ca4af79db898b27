"""Task kind ``s3_touch:``: write one empty flag object (OTF's "touch a file as an
execution"), recorded as one stage. The write is
:func:`~handoff_provider.core.aws.s3_transfers.touch_flag` (bucket-owner-full-control ACL unless
``disable_bucket_owner_acl``)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

# The spec readers of transfers.py: a flag's key follows the same rules as its flags'.
from handoff_provider.core.model.transfers import _bool, _key, _require, _str, check_mapping_keys
from handoff_provider.core.steps.aws_call import AwsCallKind, schema_keys, wait_for
from handoff_provider.core.steps.base import RunScope, TaskPlan

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.summary import StageResult


@dataclass(frozen=True)
class TouchStep:
    """A task step writing one empty flag object.

    project.yml: ``tasks: [{name, s3_touch: {bucket, key}}]``."""

    #: The kind's schema fragment (composed into the project schema).
    SCHEMA: ClassVar[Mapping[str, Any]] = {
        "description": "Write one empty flag object (core/steps/s3_touch.py).",
        "type": "object",
        "additionalProperties": False,
        "required": ["bucket", "key"],
        "properties": {
            "bucket": {"type": "string", "minLength": 1},
            "key": {"type": "string", "minLength": 1},
            "disable_bucket_owner_acl": {"type": "boolean"},
        },
    }

    bucket: str
    key: str
    disable_bucket_owner_acl: bool = False

    @classmethod
    def from_mapping(cls, data: Any, *, path: str) -> TouchStep:
        data = check_mapping_keys(data, path, **schema_keys(cls.SCHEMA))
        return cls(
            bucket=_str(data, "bucket", path),
            key=_key(_str(data, "key", path), f"{path}.key"),
            disable_bucket_owner_acl=_bool(data, "disable_bucket_owner_acl", path, False),
        )

    def render(self, render: Callable[[str, str], str], *, path: str = "s3_touch") -> TouchStep:
        bucket = render(self.bucket, f"{path}.bucket")
        _require(bucket, f"{path}.bucket")
        return replace(self, bucket=bucket, key=_key(render(self.key, f"{path}.key"), path))

    def run(self, s3: Any) -> str:
        """Touch the flag; returns its ``s3://`` URI."""
        from handoff_provider.core.aws.s3_transfers import touch_flag

        return touch_flag(s3, self.bucket, self.key, acl=not self.disable_bucket_owner_acl)


class TouchKind(AwsCallKind):
    key = "s3_touch"
    hint = "'s3_touch'"
    spec = TouchStep

    def label(self, step: TouchStep) -> str:
        return f"s3_touch s3://{step.bucket}/{step.key}"

    def cli_line(self, task: Task) -> str:
        step = task.step
        words = ["aws s3api put-object --bucket", shlex.quote(step.bucket)]
        words += ["--key", shlex.quote(step.key)]
        if not step.disable_bucket_owner_acl:
            words.append("--acl bucket-owner-full-control")
        return " ".join(words)

    def call(self, plan: TaskPlan, scope: RunScope, stage: StageResult) -> None:
        s3 = scope.client("s3")
        uri = wait_for(plan, scope, lambda: plan.step.run(s3))
        scope.log(f"task '{plan.task.name}': flag {uri}")


KIND = TouchKind()
