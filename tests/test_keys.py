from apiaccess import keys


def test_it_generates_well_formed_keys():
    new = keys.generate_key()
    assert new.plain.startswith("sk-gh-")
    assert keys.lookup_of(new.plain) == new.lookup
    assert keys.matches(new.plain, new.digest)


def test_it_rejects_keys_that_cannot_be_ours():
    new = keys.generate_key()
    for bad in ["", "sk-gh-", "sk-other", new.plain + "x", new.plain[:-1], "sk-gh-" + "é" * 48]:
        assert keys.lookup_of(bad) is None


def test_it_does_not_match_a_tampered_key():
    new = keys.generate_key()
    tampered = new.plain[:-1] + ("A" if new.plain[-1] != "A" else "B")
    assert not keys.matches(tampered, new.digest)
