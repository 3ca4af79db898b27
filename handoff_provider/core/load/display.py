"""A project as shell lines (``handoff show commands``, the DAG's docs): each task through
its kind's ``describe`` (:mod:`handoff_provider.core.steps`), transfers as comments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoff_provider.core.steps import kind_named

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Project
    from handoff_provider.core.model.transfers import InputSpec, OutputSpec


def shell_lines(project: Project) -> list[str]:
    """The tasks as shell lines, for ``handoff show commands``.

    A pipeline is one line (``cat files/a.txt | wc -l``); a ``commands:`` task one
    line per command. With several tasks (or an inactive/limited one) each gets a
    ``# task: name`` header. A stage in a venv is shown as ``venvs/<name>/bin/<cmd>``,
    or, when the command is a path, with the venv's ``bin`` put first on ``PATH``
    (which is what the runner does). ``args`` are shown unrendered. A ``lambda`` /
    ``s3_touch`` task is shown as the equivalent AWS CLI command; ``transfers`` as
    ``#`` comment lines, inputs before the tasks and outputs after them.
    """
    lines: list[str] = [
        f"# transfers.inputs[{index}]: {_input_line(spec)}"
        for index, spec in enumerate(project.transfers.inputs)
    ]
    with_headers = len(project.tasks) > 1 or any(
        not t.active or t.timeout is not None for t in project.tasks
    )
    for task in project.tasks:
        if with_headers:
            notes = [task.kind]
            if not task.active:
                notes.append("inactive")
            if task.timeout is not None:
                notes.append(f"timeout {task.timeout:g}s")
            lines.append(f"# task: {task.name} ({', '.join(notes)})")
        lines.extend(kind_named(task.kind).describe(task))
    lines.extend(
        f"# transfers.outputs[{index}]: {_output_line(spec)}"
        for index, spec in enumerate(project.transfers.outputs)
    )
    return lines


def _s3_folder(bucket: str, directory: str) -> str:
    from handoff_provider.core.aws.s3_watch import normalize_prefix  # projects with transfers

    return f"s3://{bucket}/{normalize_prefix(directory)}"


def _input_line(spec: InputSpec) -> str:
    dest = f"files/{spec.dest.strip('/')}/" if spec.dest else "files/"
    text = f"{_s3_folder(spec.bucket, spec.directory)} =~ {spec.file_regex} -> {dest}"
    if spec.min_count is not None or spec.max_count is not None:
        text += f" (needs {spec.criteria().wanted()} object(s))"
    post = spec.post_copy
    if post is not None and post.action in ("move", "rename"):
        where = post.archive_directory or ""
        if post.archive_bucket:
            where = f"s3://{post.archive_bucket}/{where}"
        if post.action == "move":
            text += f" (after success: move to {where})"
        else:
            text += f" (after success: rename {post.pattern} -> {post.replacement}"
            text += f" into {where})" if where else ")"
    elif post is not None:
        text += " (after success: delete)"
    return text


def _output_line(spec: OutputSpec) -> str:
    text = spec.source + (f" =~ {spec.file_regex}" if spec.file_regex else "")
    text += f" -> {_s3_folder(spec.bucket, spec.directory)}"
    if spec.flag:
        text += f" (then flag s3://{spec.bucket}/{spec.flag})"
    return text
