"""Jinja rendering of ``args``, project ``vars`` and the text files of ``files/``.

Rendering is sandboxed (``ImmutableSandboxedEnvironment``: templates can't reach Python
internals or mutate what they're given) and strict: an undefined variable is an error,
and so is an expression that renders ``None`` (a run context variable such as
``start_at`` is ``None`` when the run has no data interval; ``{{ start_at or '...' }}``
gives a default), so a command never silently receives ``"None"`` or ``""``.

Error messages name the template's source (``project.yml: tasks[0].pipeline[1].args``)
and line, never a rendered value: templates may read secrets through ``functions``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.atomic_files import replace_file
from handoff_provider.core.errors import HandoffError, TemplateError
from handoff_provider.core.load.safe_tree import shown
from handoff_provider.core.load.shell_words import split_words
from handoff_provider.core.model.context import RunContext

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from handoff_provider.core.model.project import Project

_MARKERS = ("{{", "{%", "{#")
_BYTE_MARKERS = tuple(marker.encode() for marker in _MARKERS)
#: Largest file of ``files/`` rendered as a template (a larger one with markers is refused).
MAX_TEMPLATE_BYTES = 4 << 20
#: A NUL byte in this many first bytes makes a file binary (never rendered).
_BINARY_SNIFF = 8192
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_UNDEFINED_MEMBER = re.compile(r"^.* has no (attribute|element) '?(.*?)'?$")
_TEMPLATE_FILENAME = "<template>"


class _NoneRendered(Exception):
    """Raised by ``finalize`` when an expression's value is ``None``."""


def _finalize(value: Any) -> Any:
    if value is None:
        raise _NoneRendered
    return value


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed Jinja environment, made (and Jinja imported) on first use only: a
    run whose texts hold no markers never pays for importing Jinja."""
    import jinja2.sandbox

    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )


def has_markers(text: str) -> bool:
    """Whether ``text`` contains Jinja syntax (``{{``, ``{%`` or ``{#``)."""
    return any(marker in text for marker in _MARKERS)


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised at (Jinja rewrites tracebacks so)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_text(
    template: str,
    variables: Mapping[str, Any],
    *,
    source: str,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> str:
    """Render ``template`` with ``variables`` (and extra global ``functions``).

    Text without Jinja markers is returned unchanged. Raises ``TemplateError`` naming
    ``source`` (and the line, for multi-line templates) on an undefined variable, a
    ``None`` value, a syntax error or an unsafe operation; ``HandoffError`` raised by a
    function (e.g. a failing SSM lookup) propagates as is.
    """
    if not has_markers(template):
        return template
    import jinja2
    from jinja2.sandbox import SecurityError

    multiline = "\n" in template.rstrip("\n")

    def fail(message: str, line: int | None) -> TemplateError:
        where = f"line {line}: " if line is not None and multiline else ""
        return TemplateError(f"{source}: {where}{message}")

    try:
        compiled = _environment().from_string(template, globals=dict(functions or {}))
    except jinja2.TemplateSyntaxError as exc:
        raise fail(f"template syntax error: {exc.message}", exc.lineno) from None
    try:
        return compiled.render(dict(variables))
    except jinja2.UndefinedError as exc:
        raise fail(_describe_undefined(exc.message or "", template), _template_line(exc)) from None
    except _NoneRendered as exc:
        raise fail(
            "an expression renders None (a run context variable such as start_at is not set "
            "for this run?); give a default, e.g. {{ start_at or '2024-01-01' }}",
            _template_line(exc),
        ) from None
    except SecurityError as exc:
        raise fail("unsafe operation refused by the template sandbox", _template_line(exc)) from (
            None
        )
    except HandoffError:
        raise
    except jinja2.TemplateError as exc:
        raise fail(f"template error ({type(exc).__name__})", _template_line(exc)) from None
    except Exception as exc:
        # The message may quote a rendered value (a secret): only the type is shown.
        raise fail(f"rendering failed ({type(exc).__name__})", _template_line(exc)) from None


def _describe_undefined(message: str, template: str) -> str:
    """Name what is undefined, but only names written in the template itself: an item
    looked up with a computed key (``cfg[value]``) may be a secret value."""
    match = _UNDEFINED_NAME.match(message)
    if match:
        return f"undefined variable '{match.group(1)}'"
    match = _UNDEFINED_MEMBER.match(message)
    if match and match.group(2) in template:
        return f"undefined {match.group(1)} '{match.group(2)}'"
    return "undefined attribute or item"


def split_args(rendered: str, *, source: str) -> list[str]:
    """Split rendered ``args`` into words like a POSIX shell (quotes, backslashes), no
    globbing, no ``$VAR`` expansion. Unbalanced quotes raise ``TemplateError``."""
    try:
        return split_words(rendered)
    except ValueError as exc:
        # shlex's messages ("No closing quotation", "No escaped character") hold no value.
        raise TemplateError(f"{source}: cannot split args into words: {exc}") from None


def parse_var_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (``-v`` options) -> ``{key: value}``; later ones win.

    Errors never echo the item: it may be a secret typed without its key.
    """
    overrides: dict[str, str] = {}
    for position, item in enumerate(items, start=1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise TemplateError(f"variable override #{position}: expected KEY=VALUE (no '=')")
        if not key:
            raise TemplateError(f"variable override #{position}: empty key before '='")
        if not _NAME.fullmatch(key):
            raise TemplateError(
                f"variable override #{position}: {key!r} is not a valid variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        overrides[key] = value
    return overrides


def build_variables(
    project: Project,
    context: RunContext | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> dict[str, Any]:
    """The variables templates see: run context, project ``vars``, ``-v`` overrides.

    Each project var is itself a template, rendered in order: it sees the run context,
    the overrides and the vars before it. An override replaces a var (its value is used
    literally, not rendered) and may also set names the project doesn't declare.
    """
    context = context or RunContext()
    overrides = dict(overrides or {})
    variables: dict[str, Any] = dict(context.as_variables())
    variables.update(overrides)
    for index, (key, template) in enumerate(project.vars.items()):
        if key in overrides:
            continue
        variables[key] = render_text(
            template,
            variables,
            source=f"{project.source}: vars[{index}].value",
            functions=functions,
        )
    return variables


def _template_text(path: Path, name: str) -> str | None:
    """The text of ``path`` when it is a template to render, else None (see
    :func:`render_workspace_files`). Never holds more than the size limit in memory."""
    with path.open("rb") as handle:
        head = handle.read(MAX_TEMPLATE_BYTES + 1)
        if b"\0" in head[:_BINARY_SNIFF]:
            return None  # binary (git's heuristic): copied as it is
        if len(head) <= MAX_TEMPLATE_BYTES:
            if not any(marker in head for marker in _BYTE_MARKERS):
                return None
            try:
                return head.decode("utf-8")
            except UnicodeDecodeError:
                return None
        overlap = b""
        chunk = head
        while chunk:
            data = overlap + chunk
            if any(marker in data for marker in _BYTE_MARKERS):
                raise TemplateError(
                    f"{name}: contains template markers ({{{{, {{% or {{#) but is larger than "
                    f"the {MAX_TEMPLATE_BYTES >> 20} MiB limit for a template; keep templates "
                    "small and data files free of markers"
                )
            overlap = data[-1:]
            chunk = handle.read(1 << 20)
    return None


def render_workspace_files(
    files_dir: Path,
    variables: Mapping[str, Any],
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> list[Path]:
    """Render in place the UTF-8 text files under ``files_dir`` that contain Jinja markers.

    A file is a template only when it is text (no NUL byte in its first 8 KiB, valid
    UTF-8) of at most :data:`MAX_TEMPLATE_BYTES`; binary and non-UTF-8 files are left
    untouched, whatever their size, and never read whole. A larger text file holding
    markers is a :class:`TemplateError` (it would be read whole to be rendered).
    Symlinks are not followed (a rendered write must not land outside the workspace).
    The file mode is kept (scripts stay executable). Returns the rendered paths, sorted.
    Errors name ``files/<name>``.
    """
    files_dir = Path(files_dir)
    if not files_dir.is_dir():
        return []
    rendered: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(files_dir):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_symlink() or not path.is_file():
                continue
            source = f"{files_dir.name}/{shown(path.relative_to(files_dir))}"
            text = _template_text(path, source)
            if text is None:
                continue
            output = render_text(text, variables, source=source, functions=functions)
            _replace_text(path, output)
            rendered.append(path)
    return sorted(rendered)


def _replace_text(path: Path, text: str) -> None:
    """Atomically replace ``path``'s content, keeping its permission bits."""
    replace_file(path, text.encode("utf-8"), mode=stat.S_IMODE(path.stat().st_mode))
