"""Themes: Jinja2 renders MJML, mjml-python (MRML, the Rust port of MJML) compiles it to HTML.

Templates are found in the workspace's ``templates/`` folder first, then in
the built-in themes shipped as the package ``newsletter.templates``; a theme
is a folder holding ``email.mjml.j2`` (``templates/<theme>/email.mjml.j2``).
Autoescape is on and undefined names are errors, so a typo in a theme is
reported with its file and line instead of rendering as nothing.

Compiling: MRML keeps text and attribute values as Jinja escaped them, so
the article's HTML reaches the output byte for byte. It is called with
``fonts={}``: by default it adds a Google Fonts ``<link>`` and ``@import``
for any of its default font names a theme mentions, and an email must load
nothing from the network that its theme did not ask for (an explicit
``<mj-font>`` still works). The language comes from ``<mjml lang=...>``
(MRML's default is ``und``), which the themes fill from the workspace.

Errors: Jinja syntax and runtime errors (an undefined name, but also any
exception a theme's expression raises, such as ``{{ 1/0 }}``) carry the
template file and line. MRML silently passes unknown ``mj-`` tags and
mismatched ``mj-`` end tags (``</mj-colum>`` closes an ``<mj-column>``), so
a scan of the rendered MJML before compiling refuses them, with the template
line of the tag. When MRML itself refuses the MJML (unbalanced HTML inside an
``<mj-text>``, say), the same scan over every tag finds the line; failing
that, the byte position MRML reports is mapped to the rendered line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from newsletter.errors import NewsletterError, TemplateError

TEMPLATE_FILE = "email.mjml.j2"
WRONG_PACKAGE_HINT = "pip uninstall -y mjml && pip install --force-reinstall mjml-python"

# Every tag MRML (mjml-python 1.4) understands; it passes any other silently.
MJML_TAGS = frozenset({
    "mjml", "mj-head", "mj-body", "mj-attributes", "mj-all", "mj-class", "mj-breakpoint", "mj-font",
    "mj-preview", "mj-style", "mj-title", "mj-raw", "mj-include", "mj-accordion", "mj-accordion-element",
    "mj-accordion-title", "mj-accordion-text", "mj-button", "mj-carousel", "mj-carousel-image",
    "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image", "mj-navbar", "mj-navbar-link",
    "mj-section", "mj-social", "mj-social-element", "mj-spacer", "mj-table", "mj-text", "mj-wrapper",
})
# HTML elements that have no end tag (MRML accepts them unclosed)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr"})
# a comment (skipped), or a start/end tag: (end slash, name, attributes, self-closing slash)
_TAG = re.compile(r"<!--.*?-->|<(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>", re.S)
# the same, for mjml and mj-* tags only
_MJ_TAG = re.compile(r"<!--.*?-->|<(/?)(mjml|mj-[A-Za-z0-9-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>", re.S)
# the contents of <mj-style> (CSS: "a > b" is no tag)
_STYLE = re.compile(r"(<mj-style\b[^>]*>)(.*?)(</mj-style\s*>)", re.S)
_POSITION = re.compile(r"at position (\d+):(\d+)")


def builtin_templates_dir() -> Path:
    """The folder of the built-in themes (the package ``newsletter.templates``)."""
    from importlib.resources import files

    return Path(str(files("newsletter.templates")))


@lru_cache(maxsize=1)
def mjml_compiler() -> Callable[..., str]:
    """mjml-python's ``mjml2html``, or a one-line error naming the fix.

    The PyPI packages ``mjml`` (a pure-Python port) and ``mjml-python``
    install the same import name ``mjml`` and overwrite each other's files;
    only mjml-python has ``mjml2html``.
    """
    try:
        import mjml
    except ImportError:
        raise NewsletterError("mjml-python is not installed", hint=WRONG_PACKAGE_HINT) from None
    compiler = getattr(mjml, "mjml2html", None)
    if compiler is None:
        raise NewsletterError(
            "the installed 'mjml' module is the pure-Python 'mjml' package, not mjml-python (MRML)",
            hint=WRONG_PACKAGE_HINT,
        )
    # Both installed: whichever came last won the shared files, and removing
    # either later breaks the other. (A folder listing: importlib.metadata
    # would cost a cold start 80 ms.)
    site = Path(mjml.__file__).resolve().parent.parent
    if any(site.glob("mjml-[0-9]*.dist-info")):
        raise NewsletterError(
            "both the pure-Python 'mjml' package and mjml-python are installed; they share the module 'mjml'",
            hint=WRONG_PACKAGE_HINT,
        )
    return compiler


@lru_cache(maxsize=8)
def environment(workspace_templates: Path | None = None):
    """The Jinja2 environment: workspace templates first, then the built-ins."""
    import jinja2

    from newsletter.compose import filters

    search = [str(workspace_templates)] if workspace_templates and workspace_templates.is_dir() else []
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(search), jinja2.FileSystemLoader(str(builtin_templates_dir()))]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,
        finalize=filters.finalize,
    )
    env.filters.update(filters.FILTERS)
    return env


def available_themes(workspace_templates: Path | None = None) -> list[str]:
    """Names of the themes found in the workspace and the built-ins."""
    folders = [builtin_templates_dir()] + ([workspace_templates] if workspace_templates else [])
    return sorted({p.parent.name for folder in folders if folder.is_dir() for p in folder.glob(f"*/{TEMPLATE_FILE}")})


def render_html(theme: str, context: dict[str, Any], workspace_templates: Path | None = None) -> str:
    """Render ``theme`` with ``context`` to MJML and compile it to HTML."""
    env = environment(workspace_templates)
    name = f"{theme}/{TEMPLATE_FILE}"
    mjml_source = render_mjml(env, name, context, workspace_templates)
    return compile_mjml(mjml_source, env, theme)


def render_mjml(env, name: str, context: dict[str, Any], workspace_templates: Path | None = None) -> str:
    """The theme's MJML for ``context``; Jinja errors become TemplateError with file:line."""
    import jinja2

    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        theme = name.split("/")[0]
        if exc.name != name:
            raise TemplateError(f"theme {theme!r}: template {exc.name!r} not found",
                                hint="check the include/import name") from None
        themes = ", ".join(available_themes(workspace_templates)) or "none"
        raise TemplateError(f"unknown theme {theme!r}",
                            hint=f"choose one of: {themes}; or add templates/{theme}/{TEMPLATE_FILE}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}",
                            hint="fix the template at that line") from None
    try:
        return template.render(context)
    except NewsletterError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error a theme's expressions raise ({{ 1/0 }}, a bad filter call)
        where = _template_frame(exc) or template.filename
        problem = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
        raise TemplateError(f"{where}: {problem}", hint="fix the template at that line") from None


def _template_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost template frame in the traceback (Jinja rewrites them)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def compile_mjml(source: str, env=None, theme: str = "") -> str:
    """Compile MJML ``source`` to HTML; structure errors raise TemplateError with file:line."""
    compiler = mjml_compiler()
    problem = validate_layout(source)
    if problem:
        _raise_at(env, theme, *problem)
    try:
        return compiler(source, fonts={})
    except ValueError as exc:
        problem = validate_layout(source, every_tag=True)
        if problem:
            _raise_at(env, theme, *problem)
        position = _POSITION.search(str(exc))
        if position:  # a byte offset into the rendered MJML: find that line in the theme
            data = source.encode("utf-8")
            start, end = int(position.group(1)), int(position.group(2))
            near = data[start:end].decode("utf-8", "replace")
            line = data.count(b"\n", 0, start) + 1
            lines = source.split("\n")
            line_text = lines[line - 1].strip() if line <= len(lines) else ""
            where = (_locate(env, theme, line_text, line) if line_text
                     else f"{_theme_file(env, theme)} (rendered MJML line {line})")
            raise TemplateError(f"{where}: MJML failed to compile near {near[:40]!r}: {exc}",
                                hint="fix the MJML at that line") from None
        raise TemplateError(f"{_theme_file(env, theme)}: MJML failed to compile: {exc}",
                            hint="check the theme's MJML structure") from None


def _raise_at(env, theme: str, line: int, message: str, tag: str):
    raise TemplateError(f"{_locate(env, theme, tag, line)}: {message}", hint="fix the MJML at that line")


def validate_layout(layout: str, *, every_tag: bool = False) -> tuple[int, str, str] | None:
    """The first structural problem as ``(line, message, tag text)``, or None.

    By default only ``mj-`` tags are checked (unknown names, unbalanced or
    mismatched end tags: MRML would pass them silently); with ``every_tag``
    HTML tags must balance too (void elements such as ``<br>`` aside), as
    MRML requires without saying where.
    """
    # blank out CSS, keeping its length and newlines so offsets stay true
    layout = _STYLE.sub(lambda m: m.group(1) + re.sub(r"[^\n]", " ", m.group(2)) + m.group(3), layout)
    def line(offset: int) -> int:  # counted only for the problem reported
        return layout.count("\n", 0, offset) + 1

    stack: list[tuple[str, int, str]] = []  # (name, offset, tag text) of each open element
    for match in (_TAG if every_tag else _MJ_TAG).finditer(layout):
        closing, name, _attrs, self_closing = match.groups()
        if name is None:  # a comment
            continue
        is_mjml = name == "mjml" or name.startswith("mj-")
        if not is_mjml and (not every_tag or name.lower() in _VOID):
            continue
        if is_mjml and name not in MJML_TAGS:
            return line(match.start()), f"unknown MJML tag <{name}>", f"<{closing}{name}"
        if self_closing:
            continue
        if not closing:
            stack.append((name, match.start(), match.group(0)))
        elif stack and stack[-1][0] != name and not stack[-1][0].startswith("mj"):
            opener, offset, opener_tag = stack[-1]  # an HTML element left open: point at it
            return line(offset), f"<{opener}> is never closed (</{name}> comes first)", opener_tag
        elif not stack or stack[-1][0] != name:
            expected = f"</{stack[-1][0]}>" if stack else "no closing tag"
            return line(match.start()), f"</{name}> where {expected} was expected", f"</{name}"
        else:
            stack.pop()
    if stack:
        name, offset, tag = stack[-1]
        return line(offset), f"<{name}> is never closed", tag
    return None


def _locate(env, theme: str, tag: str, rendered_line: int) -> str:
    """The template ``file:line`` holding ``tag``, else the rendered line of the theme file."""
    if env is not None:
        names = env.list_templates(filter_func=lambda n: n.startswith(f"{theme}/")) if theme else []
        candidates = ([tag, re.split(r"[\s/>]", tag + " ", maxsplit=1)[0]]
                      if tag.startswith("<") and not tag.startswith("</") else [tag])
        for candidate in dict.fromkeys(candidates):
            for name in sorted(names, key=lambda n: n != f"{theme}/{TEMPLATE_FILE}"):
                source, filename, _ = env.loader.get_source(env, name)
                found = re.search(re.escape(candidate) + r"(?![\w-])", source)
                if found:
                    return f"{filename}:{source.count(chr(10), 0, found.start()) + 1}"
    return f"{_theme_file(env, theme)} (rendered MJML line {rendered_line})"


def _theme_file(env, theme: str) -> str:
    if env is None or not theme:
        return "MJML"
    try:
        return env.loader.get_source(env, f"{theme}/{TEMPLATE_FILE}")[1]
    except Exception:  # noqa: BLE001 - only used to name the file in a message
        return f"{theme}/{TEMPLATE_FILE}"
