"""Properties of the signup protection's pure parts: networks, domains and typed form fields."""

from __future__ import annotations

import ipaddress
import types

from hypothesis import assume, given
from hypothesis import strategies as st
from newsletter.audience import forms, protection
from newsletter.errors import InputError

SETTINGS = types.SimpleNamespace(signup_allow_domains=("ok.example",), signup_deny_domains=("bad.example",),
                                 signup_proof_of_work=True)


@given(st.ip_addresses(v=4), st.integers(0, 255))
def test_ipv4_addresses_of_one_24_share_a_network_and_others_do_not(address, last):
    neighbour = ipaddress.IPv4Address((int(address) & ~0xFF) | last)
    assert protection.network_of(str(address)) == protection.network_of(str(neighbour))
    other = ipaddress.IPv4Address(int(address) ^ 0x100)
    assert protection.network_of(str(address)) != protection.network_of(str(other))


@given(st.ip_addresses(v=6), st.integers(0, 2**80 - 1))
def test_ipv6_addresses_of_one_48_share_a_network(address, low):
    neighbour = ipaddress.IPv6Address((int(address) >> 80 << 80) | low)
    assume(address.ipv4_mapped is None and neighbour.ipv4_mapped is None)  # those count as IPv4 (their /24)
    assert protection.network_of(str(address)) == protection.network_of(str(neighbour))


@given(st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,2}", fullmatch=True))
def test_denied_domains_hold_their_subdomains_and_allowed_ones_are_never_disposable(prefix):
    assert protection.reasons_to_hold(f"x@{prefix}.bad.example", SETTINGS, proven=True) == [protection.DENIED]
    assert protection.DISPOSABLE not in protection.reasons_to_hold(f"x@{prefix}.ok.example", SETTINGS, proven=True)
    assert protection.NO_PROOF in protection.reasons_to_hold(f"x@{prefix}.ok.example", SETTINGS, proven=False)


FIELDS = [{"name": "city", "type": "text"}, {"name": "visits", "type": "number"},
          {"name": "born", "type": "date"}, {"name": "consent", "type": "checkbox"}]


@given(st.dictionaries(st.sampled_from(["city", "visits", "born", "consent", "other"]), st.text(max_size=300)))
def test_typed_fields_become_clean_attributes_or_one_input_error(data):
    try:
        attributes = forms.attributes_from(FIELDS, data)
    except InputError:
        return
    assert set(attributes) <= {"city", "visits", "born", "consent"} and attributes["consent"] in ("yes", "no")
    for value in attributes.values():
        assert value == value.strip() and len(value) <= forms.TEXT_MAX
        assert not any(ord(c) < 32 or ord(c) == 127 for c in value)
    if "visits" in attributes:
        float(attributes["visits"])


def test_signup_settings_are_read_and_a_bad_domain_is_a_config_error(tmp_path, monkeypatch):
    import pytest
    from newsletter.config import load_settings
    from newsletter.errors import ConfigError
    from newsletter.workspace import init_workspace

    folder = tmp_path / "letter"
    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street",
                   base_url="https://news.clinic.example")
    config = folder / "newsletter.toml"
    original = config.read_text()
    assert load_settings(folder).signup_proof_of_work is True  # on by default: the compliant choice
    config.write_text(original + '\n[signups]\nproof_of_work = false\n')
    assert load_settings(folder).signup_proof_of_work is False  # turned off in newsletter.toml
    config.write_text(original + '\n[signups]\nproof_of_work = true\nnetwork_limit = 50\n'
                      'allow_domains = "Staff.Example, @ok.example"\ndeny_domains = ["spam.example"]\n')
    settings = load_settings(folder)
    assert (settings.signup_proof_of_work, settings.signup_network_limit) == (True, 50)
    assert settings.signup_allow_domains == ("staff.example", "ok.example")
    assert settings.signup_deny_domains == ("spam.example",)
    monkeypatch.setenv("NEWSLETTER_SIGNUP_PROOF_OF_WORK", "0")
    assert load_settings(folder).signup_proof_of_work is False
    config.write_text(original + '\n[signups]\ndeny_domains = ["not a domain"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(folder)
    assert "deny_domains" in info.value.message and "not a domain" in info.value.message
