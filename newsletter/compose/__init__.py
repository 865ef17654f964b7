"""The composer: article files -> Edition (HTML and text compiled once, merge tokens left in).

Modules: ``readers`` (dispatch, front matter) with ``plaintext``,
``markdown_reader`` and ``html_reader``; ``model`` (the Article); ``render``
(Jinja2 -> MJML -> HTML) and ``filters``; ``text`` (the plain-text part);
``edition`` (compose_edition, merge values, the Message); ``checks`` (the
pre-flight); ``caniemail`` (client support, from caniemail.com's data);
``spam`` (SpamAssassin, run locally); ``output`` (the .html/.txt/.sample.html/.eml
files); ``merge`` (tokens).
"""

from newsletter.compose.edition import (  # noqa: F401 - the package's public names
    Edition,
    Finding,
    compose_edition,
    edition_message,
    merge_values,
    sample_mime,
    sample_recipient,
)
