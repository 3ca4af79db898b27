"""Task kind ``pipeline:``: the stages run at once, joined by OS pipes
(``stage1 | stage2 | ...``; see ``core/run/pipeline.py`` for pipefail, SIGPIPE and timeouts).
The last stage's stdout goes to ``artifacts/<task>.stdout.log`` when it isn't the state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoff_provider.core.steps.process import ProcessKind

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.pipeline import StageSpec


class PipelineKind(ProcessKind):
    key = "pipeline"
    hint = "'pipeline' (stages joined by pipes)"

    def groups(self, stages: list[StageSpec]) -> list[tuple[int, list[StageSpec]]]:
        return [(1, stages)]

    def stdout_log(self, task: Task, first: int) -> str:
        return f"{task.name}.stdout.log"

    def shell(self, lines: list[str]) -> list[str]:
        return [" | ".join(lines)]


KIND = PipelineKind()
