"""The coincurve recovery on the hot path agrees with eth-account, the reference."""

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.events.signing import (
    SignatureError,
    recover_address,
    recover_with_eth_account,
    sign_digest,
    sign_with_eth_account,
)

keys = st.binary(min_size=32, max_size=32).filter(
    lambda k: (
        0
        < int.from_bytes(k, "big")
        < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    )
)


@settings(max_examples=50)
@given(keys, st.binary(min_size=32, max_size=32))
def test_recovery_finds_the_signer_as_eth_account_does(key, digest):
    account = Account.from_key(key)
    signature = sign_digest(account, digest)
    assert recover_address(digest, signature) == account.address.lower()
    assert recover_with_eth_account(digest, signature) == account.address.lower()


@settings(max_examples=100)
@given(keys, st.binary(min_size=32, max_size=32))
def test_fast_signing_is_byte_identical_to_eth_account(key, digest):
    account = Account.from_key(key)
    assert sign_digest(account, digest) == sign_with_eth_account(account, digest)


@settings(max_examples=50)
@given(keys, st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_another_digest_recovers_another_address(key, digest, other):
    account = Account.from_key(key)
    signature = sign_digest(account, digest)
    if other != digest:
        assert recover_address(other, signature) != account.address.lower()


@pytest.mark.parametrize(
    "signature",
    ["", "0x", "0x1234", "nothex", "0x" + "zz" * 65, "0x" + "00" * 64 + "1d", "0x" + "00" * 65],
)
def test_malformed_signatures_raise_signature_error(signature):
    with pytest.raises(SignatureError):
        recover_address(b"\x01" * 32, signature)
