"""Themes: Jinja2 renders MJML, mjml-python compiles it to HTML.

Templates are found in the workspace's ``templates/`` folder first, then in
the built-in themes shipped as the package ``newsletter.templates``; a theme
is a folder holding ``email.mjml.j2`` (``templates/<theme>/email.mjml.j2``).
Autoescape is on and undefined names are errors, so a typo in a theme is
reported with its file and line instead of rendering as nothing.

Speed: mjml-python parses every element with BeautifulSoup, which costs about
4 ms per kilobyte of article text. The contents of ``<mj-text>``,
``<mj-button>``, ``<mj-raw>``, ``<mj-title>`` and ``<mj-preview>`` are copied
to the output as they are, so they are lifted out before compiling (replaced
by slot tokens) and put back afterwards: MJML compiles only the layout, once
per edition, and the article's HTML reaches the output byte for byte.

Escaping: mjml-python unescapes attribute values and writes them back raw
(``alt="a &quot;b&quot;"`` comes out as ``alt="a "b""``). Attribute values
holding an entity in ``href``, ``src``, ``alt`` and ``title`` (where article
text goes) are therefore lifted the same way, so the value Jinja
escaped is the value in the output.

Errors: Jinja syntax and runtime errors (an undefined name, but also any
exception a theme's expression raises, such as ``{{ 1/0 }}``) carry the
template file and line. MJML
structure errors (unknown or unbalanced ``mj-`` tags, which mjml-python would
silently pass or mangle) are found by a strict scan of the rendered layout
before compiling, and mapped back to the template line holding that tag.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from newsletter.errors import NewsletterError, TemplateError

TEMPLATE_FILE = "email.mjml.j2"
# an opening (not self-closing) mj-text/mj-button/mj-raw, its contents, and its end tag
_LIFTED = re.compile(r"(<(mj-text|mj-button|mj-raw|mj-title|mj-preview)\b(?:[^>\"'/]|\"[^\"]*\"|'[^']*'|/(?!>))*>)(.*?)(</\2\s*>)", re.S)
# an attribute value holding an entity: mjml-python would write it out unescaped
_ESCAPED_VALUE = re.compile(r"(\s(?:href|src|alt|title)=\")([^\"]*&[^\"]*)(\")")
_MJ_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>")
_SELF_CLOSING_OK = {"mj-image", "mj-divider", "mj-spacer", "mj-all", "mj-class", "mj-breakpoint", "mj-include", "mj-font", "mj-social-element", "mj-carousel-image"}


def builtin_templates_dir() -> Path:
    """The folder of the built-in themes (the package ``newsletter.templates``)."""
    from importlib.resources import files

    return Path(str(files("newsletter.templates")))


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
            raise TemplateError(f"theme {theme!r}: template {exc.name!r} not found", hint="check the include/import name") from None
        themes = ", ".join(available_themes(workspace_templates)) or "none"
        raise TemplateError(f"unknown theme {theme!r}", hint=f"choose one of: {themes}; or add templates/{theme}/{TEMPLATE_FILE}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}", hint="fix the template at that line") from None
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
    """Compile MJML ``source`` to HTML, lifting raw-HTML contents around the compiler."""
    from mjml import mjml_to_html

    layout, slots = _lift(source)
    problem = validate_layout(layout)
    if problem:
        line, message, tag = problem
        raise TemplateError(f"{_locate(env, theme, tag, line)}: {message}", hint="fix the MJML at that line")
    try:
        result = mjml_to_html(layout)
    except (ValueError, KeyError, AssertionError, AttributeError) as exc:
        raise TemplateError(f"{_theme_file(env, theme)}: MJML failed to compile: {exc}", hint="check the theme's MJML structure") from None
    return _put_back(result.html, slots)


def _lift(source: str) -> tuple[str, dict[str, str]]:
    nonce = secrets.token_hex(4)
    slots: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        key = f"nlslot{len(slots)}x{nonce}"
        slots[key] = match.group(3)
        return f"{match.group(1)}{key}{match.group(4)}"

    def replace_value(match: re.Match) -> str:
        key = f"nlslot{len(slots)}x{nonce}"
        slots[key] = match.group(2)
        return f"{match.group(1)}{key}{match.group(3)}"

    def replace_attributes(match: re.Match) -> str:
        return _ESCAPED_VALUE.sub(replace_value, match.group(0))

    layout = _LIFTED.sub(replace, source)
    return _MJ_TAG.sub(replace_attributes, layout), slots


def _put_back(html: str, slots: dict[str, str]) -> str:
    if not slots:
        return html
    pattern = re.compile("|".join(re.escape(key) for key in slots))
    seen: list[str] = []

    def replace(match: re.Match) -> str:
        seen.append(match.group(0))
        return slots[match.group(0)]

    html = pattern.sub(replace, html)
    if set(seen) != set(slots):
        raise TemplateError("MJML dropped or repeated some content", hint="an mj-text, mj-button or mj-raw is misplaced in the theme")
    return html


def validate_layout(layout: str) -> tuple[int, str, str] | None:
    """The first structural problem as ``(line, message, tag text)``, or None."""
    from newsletter.compose.filters import known_mjml_tags

    known = known_mjml_tags()
    stack: list[tuple[str, int, str]] = []
    for match in _MJ_TAG.finditer(layout):
        closing, name, _attrs, self_closing = match.groups()
        line = layout.count("\n", 0, match.start()) + 1
        tag = match.group(0)
        if name not in known:
            return line, f"unknown MJML tag <{name}>", f"<{closing}{name}"
        if self_closing:
            continue
        if not closing:
            stack.append((name, line, tag))
        elif not stack or stack[-1][0] != name:
            expected = f"</{stack[-1][0]}> (opened on line {stack[-1][1]})" if stack else "no closing tag"
            return line, f"</{name}> where {expected} was expected", f"</{name}"
        else:
            stack.pop()
    if stack:
        name, line, tag = stack[-1]
        return line, f"<{name}> is never closed", tag
    return None


def _locate(env, theme: str, tag: str, rendered_line: int) -> str:
    """The template ``file:line`` holding ``tag``, else the rendered line of the theme file."""
    if env is not None:
        names = env.list_templates(filter_func=lambda n: n.startswith(f"{theme}/")) if theme else []
        candidates = [tag, re.split(r"[\s/>]", tag + " ", maxsplit=1)[0]] if tag.startswith("<mj") else [tag]
        for candidate in dict.fromkeys(candidates):
            for name in sorted(names, key=lambda n: n != f"{theme}/{TEMPLATE_FILE}"):
                source, filename, _ = env.loader.get_source(env, name)
                index = source.find(candidate)
                if index >= 0:
                    return f"{filename}:{source.count(chr(10), 0, index) + 1}"
    return f"{_theme_file(env, theme)} (rendered MJML line {rendered_line})"


def _theme_file(env, theme: str) -> str:
    if env is None or not theme:
        return "MJML"
    try:
        return env.loader.get_source(env, f"{theme}/{TEMPLATE_FILE}")[1]
    except Exception:  # noqa: BLE001 - only used to name the file in a message
        return f"{theme}/{TEMPLATE_FILE}"
