"""Wallet A: the hot wallet that signs. Its key never leaves this object.

``HotWallet`` keeps the key inside an eth_account ``LocalAccount`` and shows only its address
in ``repr``/``str``, so an accidental log line, exception or artifact cannot leak it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from dexpilot.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SignedTx:
    tx_hash: str
    raw: str
    nonce: int


class HotWallet:
    __slots__ = ("_account", "address")

    def __init__(self, private_key: str) -> None:
        try:
            account: LocalAccount = Account.from_key(private_key)
        except Exception:
            # The underlying message can echo the key; never chain it.
            raise ConfigError("hot-wallet key is not a valid 32-byte hex private key") from None
        self._account = account
        self.address: str = account.address

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        signed = self._account.sign_transaction(tx)
        return SignedTx("0x" + signed.hash.hex().removeprefix("0x"),
                        "0x" + signed.raw_transaction.hex().removeprefix("0x"), int(tx["nonce"]))

    def __repr__(self) -> str:
        return f"HotWallet({self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("HotWallet cannot be pickled: it holds a private key")
