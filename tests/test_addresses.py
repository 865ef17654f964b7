"""Address validation: the fast path agrees with email-validator."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email
from newsletter.errors import InvalidAddress
from newsletter.vocabulary.addresses import _fast_normalise, address_key, normalise_address


def _validator(address):
    try:
        return validate_email(address, check_deliverability=False, strict=True).normalized
    except EmailNotValidError:
        return None


def _corpus():
    rng = random.Random(11)
    locals_ = ["a", "Ada.Lovelace", "x+tag", "o'neil", "a..b", ".a", "a.", "-x", "x_y", "Z" * 64, "Z" * 65,
               "much.more.unusual", "üser", "a b", "#!$%&'*+/=?^_`{|}~-"]
    domains = ["example.org", "Example.COM", "sub.mail.example.net", "x.co", "x.c", "localhost", "x.test",
               "x.local", "x.invalid", "xn--bcher-kva.ch", "bücher.ch", "a-.com", "-a.com", "a--b.com",
               "x.123", "x.co1", "1.2.3.4", "[1.2.3.4]", "x." + "a" * 63, "x." + "a" * 64, "a" * 64 + ".com"]
    corpus = [f"{local}@{d}" for local in locals_ for d in domains]
    alphabet = "abcXYZ09.-_+@"
    corpus += ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 20))) for _ in range(2000)]

    def part(chars, low, high):
        return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))

    corpus += [f"{part('abZ9._+-', 1, 12)}@{part('ab9-', 1, 8)}.{part('abcZ9-', 1, 4)}" for _ in range(3000)]
    return corpus


def test_fast_path_never_disagrees_with_email_validator():
    accepted_fast = 0
    for address in _corpus():
        fast = _fast_normalise(address)
        if fast is not None:
            accepted_fast += 1
            assert fast == _validator(address), address
    assert accepted_fast > 100  # the fast path is really taken


def test_normalise_matches_validator_on_both_paths():
    assert normalise_address(" Ada.Lovelace@Example.COM ") == "Ada.Lovelace@example.com"
    assert normalise_address("a@xn--bcher-kva.ch") == "a@bücher.ch"


@pytest.mark.parametrize("bad", ["x@y.com\r\nBcc: z@q.com", "x@y.com\nTo: a@b.com", "a@b.com,c@d.com",
                                 "Ada <a@b.com>", "", "   ", "a@b", "nobody", "a@x.test"])
def test_rejects_invalid_and_header_breaking(bad):
    with pytest.raises(InvalidAddress) as info:
        normalise_address(bad)
    assert info.value.hint


def test_key_is_case_insensitive():
    assert address_key(normalise_address("ADA@example.org")) == address_key(normalise_address("ada@EXAMPLE.org"))


@pytest.mark.parametrize("local", ["a" * 65, "é" * 65, "renée." + "x" * 59])
def test_local_parts_over_64_characters_are_refused_on_both_paths(local):
    address = f"{local}@example.org"
    assert _fast_normalise(address) is None
    with pytest.raises(InvalidAddress) as info:
        normalise_address(address)
    assert "too long" in info.value.message


@pytest.mark.parametrize("breaker", ["\x85", "\u2028", "\u2029", "\x9b", "\x00"])
def test_unicode_line_separators_and_c1_controls_are_refused(breaker):
    with pytest.raises(InvalidAddress):
        normalise_address(f"ren{breaker}ee@example.org")


def test_a_64_character_non_ascii_local_part_is_kept():
    local = "é" * 64
    assert normalise_address(f"{local}@Example.org") == f"{local}@example.org"
