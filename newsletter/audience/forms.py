"""Embeddable signup forms: typed fields, their validation into attributes, and the HTML snippet.

A form (``newsletter forms create NAME --list L --field city:text``) joins
one public list. Its fields become subscriber attributes, each validated by
its type at the door (:func:`attributes_from`): ``text`` (one line, at most
:data:`TEXT_MAX` characters), ``number``, ``date`` (YYYY-MM-DD) and
``checkbox`` (``yes`` or ``no``). The snippet is a plain HTML form; with
the proof of work on (the default) it also loads our small script, and
says in a comment that without it its signups wait in the quarantine.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from newsletter.audience import tracking_consent
from newsletter.errors import InputError

FIELD_TYPES = ("text", "number", "date", "checkbox")
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
FORM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")
RESERVED = {"email", "name", "list", "website", "altcha"}  # the form's own fields
TEXT_MAX = 200
MAX_FIELDS = 20


def parse_field(spec: str) -> dict[str, str]:
    """``city:text`` -> ``{"name": "city", "type": "text"}`` (InputError with a hint when wrong)."""
    field_name, sep, kind = spec.strip().partition(":")
    kind = kind.strip().lower() or "text"
    field_name = field_name.strip()
    if not FIELD_NAME.fullmatch(field_name) or field_name in RESERVED:
        raise InputError(f"--field {spec[:60]!r}: the name must be lower-case letters, digits and _ "
                         f"(not {', '.join(sorted(RESERVED))})", hint="write it as --field city:text")
    if kind not in FIELD_TYPES:
        raise InputError(f"--field {spec[:60]!r}: unknown type {kind[:20]!r}",
                         hint=f"use one of {', '.join(FIELD_TYPES)}")
    return {"name": field_name, "type": kind}


def check_form(name: str, fields: list[dict[str, str]], redirect_url: str | None) -> None:
    """InputError for a bad form name, repeated fields or a redirect that is not an http(s) URL."""
    if not FORM_NAME.fullmatch(name):
        raise InputError(f"the form name {name[:60]!r} must be lower-case letters, digits and -",
                         hint="e.g. newsletter forms create clinic-news --list news")
    names = [f["name"] for f in fields]
    if len(set(names)) != len(names) or len(names) > MAX_FIELDS:
        raise InputError("each --field once, at most 20", hint="remove the repeated --field")
    if redirect_url is not None:
        parts = urlsplit(redirect_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(redirect_url) > 2000 \
                or any(c.isspace() or unicodedata.category(c) == "Cc" for c in redirect_url):
            raise InputError(f"--redirect {redirect_url[:80]!r} is not an http(s) URL",
                             hint="e.g. --redirect https://www.clinic.example/thanks")


def _clean_text(value: str) -> str:
    return " ".join("".join(c if unicodedata.category(c) != "Cc" else " " for c in value).split())


def attributes_from(fields: list[dict[str, Any]], data: dict[str, str]) -> dict[str, str]:
    """The posted values of ``fields`` as attributes (empty ones left out); InputError names a bad one."""
    attributes: dict[str, str] = {}
    for field in fields:
        field_name, kind = field["name"], field["type"]
        raw = data.get(field_name, "")
        if kind == "checkbox":
            attributes[field_name] = "yes" if raw.strip().lower() in ("yes", "on", "true", "1") else "no"
            continue
        value = _clean_text(raw)
        if not value:
            continue
        if kind == "text":
            if len(value) > TEXT_MAX:
                raise InputError(f"{field_name} is longer than {TEXT_MAX} characters", hint="shorten it")
        elif kind == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or len(value) > 30:
                raise InputError(f"{field_name} must be a number", hint="write digits, e.g. 42")
        elif kind == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise InputError(f"{field_name} must be a date", hint="write it as 2026-04-14") from None
        attributes[field_name] = value
    return attributes


def prefill(fields: list[dict[str, Any]], query: dict[str, str]) -> dict[str, str]:
    """The page's initial values from its query string (``?email=...&city=...``), cleaned and cut."""
    names = ["email", "name", *(f["name"] for f in fields)]
    return {key: _clean_text(query.get(key, ""))[:TEXT_MAX] for key in names}


# Said in the snippet when the proof of work is on (the default): what a visitor without scripts gets.
NO_SCRIPT_NOTE = ("<!-- The script below solves the signup's proof-of-work challenge. Without JavaScript the "
                  "form still posts, but its signups wait in the quarantine (newsletter subscribers quarantine "
                  "list) until you approve them. -->")

_INPUT_TYPES = {"text": "text", "number": "number", "date": "date"}


def field_label(field_name: str) -> str:
    return field_name.replace("_", " ").capitalize()


def snippet(base_url: str, form_name: str, fields: list[dict[str, Any]], *, proof_of_work: bool,
            tracking_text: str = "") -> str:
    """A plain HTML form to paste into a website: posts to ``{base_url}/forms/{form_name}``, no script needed.

    It always has one unticked tracking-consent checkbox (``tracking_consent``) in the words of
    ``tracking_text`` (default: ``audience.tracking_consent.DEFAULT_TEXT``), asked apart from the subscription.
    """
    tracking = tracking_consent
    tracking_label = html.escape(tracking_text or tracking.DEFAULT_TEXT)
    tracking_box = (f'  <label><input type="checkbox" name="{tracking.FIELD}" value="yes"> {tracking_label}'
                    "</label>")
    action = html.escape(f"{base_url}/forms/{form_name}", quote=True)
    lines = [f'<form method="post" action="{action}"'
             + (f' data-altcha data-challenge-url="{html.escape(base_url, quote=True)}/subscribe/challenge"'
                if proof_of_work else "") + ">",
             '  <label>Email address <input type="email" name="email" required autocomplete="email"></label>',
             '  <label>Name <input type="text" name="name" autocomplete="name"></label>']
    for field in fields:
        label = html.escape(field_label(field["name"]))
        if field["name"] == tracking.FIELD:
            continue  # the tracking box is added once, below, with its consent text
        if field["type"] == "checkbox":
            lines.append(f'  <label><input type="checkbox" name="{field["name"]}" value="yes"> {label}</label>')
        else:
            lines.append(f'  <label>{label} <input type="{_INPUT_TYPES[field["type"]]}" name="{field["name"]}">'
                         "</label>")
    lines.append(tracking_box)
    lines.append('  <div style="display:none" aria-hidden="true"><input type="text" name="website" tabindex="-1" '
                 'autocomplete="off"></div>')
    if proof_of_work:
        lines.append('  <input type="hidden" name="altcha" value="">')
    lines.append('  <button type="submit">Subscribe</button>')
    lines.append("</form>")
    if proof_of_work:
        lines.append(NO_SCRIPT_NOTE)
        lines.append(f'<script src="{html.escape(base_url, quote=True)}/subscribe/altcha.js" defer></script>')
    return "\n".join(lines) + "\n"


def create_form(store, settings, name: str, list_name: str, field_specs: tuple[str, ...],
                redirect_url: str | None) -> dict[str, Any]:
    """Store a form for public list ``list_name``; answers its name, list, fields, page URL and snippet.

    InputError for a bad name, field or redirect, or a list that is not public (a form joins public lists
    only); NotFound for an unknown list; Conflict for a name taken.
    """
    from datetime import UTC, datetime

    from newsletter.errors import NotFound
    from newsletter.store import audience as q
    from newsletter.store import forms as form_store

    fields = [parse_field(spec) for spec in field_specs]
    check_form(name, fields, redirect_url)
    with store.session() as session:
        mailing_list = q.find_list(session, list_name)
        if mailing_list is None:
            raise NotFound(f"there is no list named {list_name[:100]!r}", hint="see newsletter lists")
        if not mailing_list.public:
            raise InputError(f"the list {list_name[:100]!r} is not public",
                             hint=f"make it public first: newsletter lists update {list_name[:100]} --public")
        form_store.create_form(session, name=name, list_id=mailing_list.id, fields=fields,
                               redirect_url=redirect_url, now=datetime.now(UTC))
    return describe(settings, name, list_name, fields, redirect_url)


def describe(settings, name: str, list_name: str, fields: list[dict[str, Any]],
             redirect_url: str | None) -> dict[str, Any]:
    """What ``newsletter forms`` prints for one form."""
    base = settings.base_url or ""
    return {"name": name, "list": list_name, "fields": fields, "redirect": redirect_url,
            "url": f"{base}/forms/{name}",
            "snippet": snippet(base, name, fields, proof_of_work=settings.signup_proof_of_work,
                               tracking_text=tracking_consent.text_of(settings))}


def list_forms(store, settings) -> list[dict[str, Any]]:
    """Every form, by name."""
    from newsletter.store import forms as form_store

    with store.session() as session:
        return [describe(settings, form.name, list_name, list(form.fields), form.redirect_url)
                for form, list_name in form_store.all_forms(session)]
