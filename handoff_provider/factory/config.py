"""The factory's three config objects, shared by ``handoff_dag`` and ``HandoffTaskGroup``.

* :class:`ProjectConfig`: which project, the stack it runs as, and what its run receives
  (``vars``, ``envs``, ``secret_envs``);
* :class:`RenderConfig`: which tasks the project becomes (``mode``: push then run, run
  what the stack holds, or run the folder itself);
* an :class:`ExecutionConfig`: where the run task runs, one subclass per execution mode
  (:mod:`handoff_provider.factory.executions`: ``LocalExecution``, ``EcsExecution``).

The factories' keyword shorthand (``bucket=``, ``mode=``, ``execution="ecs", ecs={...}``,
``run_kwargs=``, ...) builds these objects (:meth:`FactoryConfig.from_arguments`), so both
spellings make the same DAG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from handoff_provider.arguments import mapping_argument
from handoff_provider.factory.errors import HandoffDagError

if TYPE_CHECKING:
    from handoff_provider.factory.parse_cache import ProjectInfo

__all__ = [
    "MODES",
    "ExecutionConfig",
    "FactoryConfig",
    "Mode",
    "ProjectConfig",
    "RenderConfig",
]

Mode = Literal["push_and_run", "run_remote", "run_local"]
MODES: tuple[str, ...] = ("push_and_run", "run_remote", "run_local")


#: The Amazon provider operators' default connection (``AwsBaseOperator.aws_conn_id``).
DEFAULT_AWS_CONN_ID = "aws_default"
#: What the run task receives of a ``ProjectConfig`` besides its connection.
_RUN_INPUTS = ("vars", "envs", "secret_envs")


#: Where to give each argument the factory sets on its tasks itself.
_FROM_THE_FACTORY = {
    "task_id": "the factory names its tasks",
    "project_dir": "the project folder is the factory's first argument",
    "stack": "give it as the factory's (or ProjectConfig's) stack=",
    "bucket": "give it as the factory's (or ProjectConfig's) bucket=",
    "aws_conn_id": "give it as the factory's (or ProjectConfig's) aws_conn_id=",
}


def reject_factory_arguments(
    where: str, given: Mapping[str, Any], taken: Mapping[str, str]
) -> None:
    """Raise ``HandoffDagError`` when ``given`` (the extra arguments of a task, ``where``
    they were given) names one the factory sets itself: ``taken`` maps each to where it
    goes instead. Without this, the task's constructor fails with Python's "got multiple
    values for keyword argument", which names neither the dict nor the fix."""
    clashes = [name for name in given if name in taken]
    if clashes:
        hints = "; ".join(f"{name}: {taken[name]}" for name in clashes)
        raise HandoffDagError(f"{where} can't set {', '.join(clashes)} ({hints})")


@dataclass(frozen=True)
class ProjectConfig:
    """The project and its stack.

    :param project_dir: the project folder; a relative path is relative to the DAG file.
    :param stack: default the folder name (``-`` for ``_``).
    :param bucket: default ``HANDOFF_BUCKET``/``S3_BUCKET_NAME`` (at run time; at parse
        time too, for the ``s3://<bucket>/<stack>/last/`` outlet).
    :param aws_conn_id: the Airflow AWS connection of every task (default ``aws_default``,
        or the ``aws_conn_id`` of the DAG's ``default_args``).
    :param vars: template variables of the run (templated); ``envs``/``secret_envs``:
        environment of its commands (local execution only; ``secret_envs`` are masked).
    """

    project_dir: str | os.PathLike[str]
    stack: str | None = None
    bucket: str | None = None
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID
    vars: Mapping[str, Any] = field(default_factory=dict)
    envs: Mapping[str, Any] = field(default_factory=dict)
    secret_envs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _RUN_INPUTS:
            value = mapping_argument(name, getattr(self, name), error=HandoffDagError)
            object.__setattr__(self, name, value)

    def aws_arguments(self) -> dict[str, Any]:
        """The AWS connection every task is given: none when left at the operators' own
        default, so that a ``default_args`` ``aws_conn_id`` applies as it would to any
        operator (and the task is built with no argument it doesn't need)."""
        if self.aws_conn_id == DEFAULT_AWS_CONN_ID:
            return {}
        return {"aws_conn_id": self.aws_conn_id}

    def run_arguments(self) -> dict[str, Any]:
        """What the run task receives of this config: its AWS connection, and ``vars``,
        ``envs`` and ``secret_envs`` when given (the operator's default is none)."""
        given = {name: dict(value) for name in _RUN_INPUTS if (value := getattr(self, name))}
        return {**self.aws_arguments(), **given}


@dataclass(frozen=True)
class RenderConfig:
    """Which tasks the project becomes.

    :param mode: ``push_and_run`` (default): ``push_config`` (project.yml + config/ ->
        SSM) -> ``push_files`` (files/ -> S3) -> ``run`` from the remote config, exactly
        what Fargate or another worker sees; ``run_remote``: ``run`` only, from what the
        stack holds; ``run_local``: ``run`` only, straight from the folder on the worker.
    :param push_args: more arguments of the config push (``allow_advanced_tier``,
        ``kms_key_id``).
    """

    mode: Mode = "push_and_run"
    push_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HandoffDagError(f"mode {self.mode!r}: use one of {', '.join(MODES)}")
        push_args = mapping_argument(
            "push_kwargs", self.push_args, string_keys=True, error=HandoffDagError
        )
        object.__setattr__(self, "push_args", push_args)
        reject_factory_arguments("push_kwargs", self.push_args, _FROM_THE_FACTORY)

    @property
    def pushes(self) -> bool:
        """The DAG pushes the project's config and files before the run."""
        return self.mode == "push_and_run"

    @property
    def runs_from_folder(self) -> bool:
        """The run reads the project folder, not the stack's remote config."""
        return self.mode == "run_local"


@dataclass(frozen=True)
class ExecutionConfig:
    """Where the run task runs. One subclass per execution mode, each in its own module
    of :mod:`handoff_provider.factory.executions`, registered there by ``name``.

    :param operator_args: more arguments of the run operator (``retries``,
        ``execution_timeout``, ``workspace``, ...).
    """

    #: The mode's name in ``execution=`` and in the DAG's documentation.
    name: ClassVar[str]
    #: What users call ``operator_args`` in the factories' shorthand (for errors).
    operator_args_given_as: ClassVar[str] = "run_kwargs"

    operator_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        operator_args = mapping_argument(
            self.operator_args_given_as, self.operator_args, string_keys=True, error=HandoffDagError
        )
        object.__setattr__(self, "operator_args", operator_args)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The mode's own settings: its fields besides ``operator_args`` (``ecs={...}``'s
        keys). The run task gets them from here, never from ``operator_args``."""
        return tuple(f.name for f in fields(cls) if f.name != "operator_args")

    @classmethod
    def from_keywords(
        cls, settings: Mapping[str, Any] | None, operator_args: Mapping[str, Any] | None
    ) -> ExecutionConfig:
        """The config of the shorthand ``execution=<name>, run_kwargs={...}`` (and the
        mode's own settings dict, e.g. ``ecs={...}``; None for other modes)."""
        return cls(operator_args=operator_args or {})

    def check(self, project: ProjectConfig, render: RenderConfig) -> None:
        """Raise ``HandoffDagError`` when this execution can't run that project/render.
        (Subclasses extend it; this one rejects operator arguments the factory sets.)"""
        taken = {
            **_FROM_THE_FACTORY,
            **{
                name: f"give it as the factory's (or ProjectConfig's) {name}="
                for name in _RUN_INPUTS
            },
            "project_dir": "the folder is the factory's first argument; mode='run_local' "
            "runs from it",
            **{
                name: f"give it in {self.name}={{'{name}': ...}} (or as "
                f"{type(self).__name__}'s {name}=)"
                for name in self.setting_names()
            },
        }
        reject_factory_arguments(self.operator_args_given_as, self.operator_args, taken)

    def run_tasks(
        self, info: ProjectInfo, project: ProjectConfig, render: RenderConfig, *, stack: str
    ) -> list[Any]:
        """Create the run task(s) in the current DAG/TaskGroup; the last one is ``run``."""
        raise NotImplementedError


#: The keywords of the factories' shorthand, by the config they build.
PROJECT_KEYWORDS = ("stack", "bucket", "aws_conn_id", "vars", "envs", "secret_envs")
RENDER_KEYWORDS = ("mode", "push_kwargs")
EXECUTION_KEYWORDS = ("execution", "run_kwargs")


@dataclass(frozen=True)
class FactoryConfig:
    """The three configs of one project's tasks, and the project's resolved folder."""

    project: ProjectConfig
    render: RenderConfig
    execution: ExecutionConfig
    #: The project folder, absolute and normalised (a string: built for every DAG parse).
    path: str

    @classmethod
    def from_arguments(
        cls,
        project_dir: str | os.PathLike[str] | None,
        *,
        project_config: ProjectConfig | None,
        render_config: RenderConfig | None,
        execution_config: ExecutionConfig | None,
        keywords: dict[str, Any],
        base: str,
    ) -> FactoryConfig:
        """The configs from a factory's arguments; the shorthand keywords are taken out of
        ``keywords`` (what is left is the DAG's or TaskGroup's). A config object and the
        shorthand of the same config can't be mixed."""
        given = {name: keywords.pop(name) for name in PROJECT_KEYWORDS if name in keywords}
        if project_config is not None and project_dir is not None:
            raise HandoffDagError("give the project folder or project_config, not both")
        project = _one_of(
            "project_config",
            project_config,
            given,
            lambda: ProjectConfig(_required_dir(project_dir), **given),
        )
        render, execution = render_and_execution(render_config, execution_config, keywords)
        return cls(
            project=project,
            render=render,
            execution=execution,
            path=resolve_project_dir(project.project_dir, base=base),
        )


def render_and_execution(
    render_config: RenderConfig | None,
    execution_config: ExecutionConfig | None,
    keywords: dict[str, Any],
) -> tuple[RenderConfig, ExecutionConfig]:
    """The render and execution configs of a factory's arguments, their shorthand keywords
    taken out of ``keywords``. ``handoff_dags_for_folder`` builds them once for every
    project of its folder."""
    from handoff_provider.factory.executions import execution_class

    given = {name: keywords.pop(name) for name in _RUN_SHORTHAND if name in keywords}
    render = _one_of(
        "render_config",
        render_config,
        {k: given[k] for k in RENDER_KEYWORDS if k in given},
        lambda: RenderConfig(
            mode=given.get("mode") or "push_and_run", push_args=given.get("push_kwargs") or {}
        ),
    )
    name = given.get("execution") or "local"
    if given.get("ecs") and name != "ecs":
        raise HandoffDagError("ecs={...} settings given but execution is not 'ecs'")
    execution = _one_of(
        "execution_config",
        execution_config,
        {k: given[k] for k in (*EXECUTION_KEYWORDS, "ecs") if given.get(k)},
        lambda: execution_class(name).from_keywords(given.get("ecs"), given.get("run_kwargs")),
    )
    return render, execution


_RUN_SHORTHAND = (*RENDER_KEYWORDS, *EXECUTION_KEYWORDS, "ecs")


def _required_dir(project_dir: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    if project_dir is None:
        raise HandoffDagError("no project: give the project folder or project_config")
    return project_dir


def _one_of(name: str, config: Any, shorthand: Mapping[str, Any], build: Any) -> Any:
    """``config`` when given (then no shorthand of it may be), else ``build()``."""
    if config is None:
        return build()
    if shorthand:
        raise HandoffDagError(
            f"{', '.join(f'{k}=' for k in shorthand)} and {name}= both given: put them in {name}"
        )
    return config


def resolve_project_dir(project_dir: str | os.PathLike[str], *, base: str) -> str:
    """An absolute project path; a relative one is relative to the DAG file's folder.

    Normalised without touching the file system (``..`` removed lexically).
    """
    path = os.path.expanduser(os.fspath(project_dir))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))
