"""``newsletter dkim ...``: DKIM keys for the SMTP transport's signatures."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli._common import json_option, pass_app, print_json, stdout_console


@click.group("dkim")
def dkim():
    """DKIM keys: make one, and see the DNS record to publish for it.

    \b
    Example:
      newsletter dkim keygen
      newsletter dkim keygen --type ed25519 --selector news2026e
    """


@dkim.command("keygen")
@click.option("--type", "key_type", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True,
              help="RSA (2048 bits; every receiver checks it) or Ed25519 (RFC 8463; sign with it beside RSA).")
@click.option("--selector", help="The selector (a DNS label). Default: newsYYYYMM, with an e for Ed25519.")
@click.option("--domain", help="The signing domain. Default: the From address's domain.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The private key file to create (never replaced). Default: .newsletter/dkim-SELECTOR.pem.")
@json_option
@pass_app
def keygen(app, key_type, selector, domain, out, as_json):
    """Make a DKIM private key (file mode 0600) and print the DNS TXT record to publish.

    Publish the record, then put the printed [smtp] lines in newsletter.toml;
    `newsletter doctor` checks that the published record matches the key.

    \b
    Example:
      newsletter dkim keygen
      newsletter dkim keygen --type ed25519 --selector news2026e --domain example.org
      newsletter dkim keygen --domain example.org --out /etc/newsletter/dkim.pem --json
    """
    from newsletter.errors import ConfigError
    from newsletter.usecases.dkim import make_key

    settings = None
    if domain is None or out is None:
        try:
            settings = app.settings
        except ConfigError:
            settings = None  # outside a workspace: make_key asks for --domain and --out
    made = make_key(key_type, selector, domain, out, settings)
    if as_json:
        print_json(made.as_dict())
        return
    console = stdout_console()
    console.print(f"Wrote the {made.key.key_type} private key to {made.path} (readable by you only).", markup=False,
                  highlight=False)
    console.print(f"\nPublish this TXT record at {made.key.record_name}:\n", markup=False, highlight=False)
    console.print(made.key.record, markup=False, highlight=False, soft_wrap=True)
    console.print("\nAs a zone-file line (the record cut into 255-character strings):\n", markup=False,
                  highlight=False)
    console.print(made.zone_line(), markup=False, highlight=False, soft_wrap=True)
    console.print("\nThen sign with it: in newsletter.toml, under [smtp]:\n", markup=False, highlight=False)
    for line in made.settings_lines():
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if made.key.key_type == "ed25519":
        console.print("\nKeep an RSA key too (dkim_selector, dkim_key_file): receivers that do not know Ed25519 "
                      "check the RSA signature.", markup=False, highlight=False)
