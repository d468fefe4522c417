"""A ledger whose transactions the chain does not know stops the runtime at start-up, naming
what disagrees and the command that resolves it; the cases reconcile handles do not; the dev
ledger follows its dev chain instance; `dexpilot ledger archive` moves a ledger aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig
from dexpilot.errors import ApiError, SystemFault
from dexpilot.execution.ledger_audit import (
    LedgerChainMismatch,
    claim_dev_ledger,
    current_instance,
    find_disagreements,
)
from dexpilot.execution.nonces import NonceManager
from dexpilot.execution.wallet import HotWallet, SignedTx
from dexpilot.ledger import ChainInstanceRow, ErrorKind, ErrorRow, Ledger, TxPurpose, TxStatus
from dexpilot.state import BotState
from dexpilot.trading.cycle import TradingRuntime
from dexpilot_cli.main import app
from tests.fixtures.chain import ANVIL_KEY_1

pytestmark = pytest.mark.chain

GWEI = 10**9


def _sign(wallet: HotWallet, nonce: int, chain_id: int, tip_gwei: int = 1) -> SignedTx:
    """A zero-value self-transfer (what a cancel is); the tip makes hashes differ per call."""
    return wallet.sign({"type": 2, "chainId": chain_id, "nonce": nonce, "to": wallet.address,
                        "value": 0, "gas": 21_000, "maxFeePerGas": 50 * GWEI,
                        "maxPriorityFeePerGas": tip_gwei * GWEI})


def _record(ledger: Ledger, env: str, signed: SignedTx, *statuses: TxStatus,
            block: int = 1) -> None:
    ledger.record_transaction(env=env, wallet=HotWallet(ANVIL_KEY_1).address,
                              purpose=TxPurpose.CANCEL, tx_hash=signed.tx_hash,
                              nonce=signed.nonce, raw_tx=signed.raw, max_fee_per_gas=50 * GWEI,
                              max_priority_fee_per_gas=GWEI, gas_limit=21_000)
    for status in statuses:
        mined = status is TxStatus.MINED
        ledger.update_transaction(signed.tx_hash, status, block_number=block if mined else None,
                                  gas_used=21_000 if mined else None)


def _confirmed_at_least_one(chain: RpcClient, address: str) -> int:
    """Wallet A's confirmed nonce count, after one real transaction if it had none."""
    if NonceManager(chain, address).confirmed_count() == 0:
        chain.request("eth_sendTransaction", [{"from": address, "to": address, "value": "0x0"}])
    return NonceManager(chain, address).confirmed_count()


def test_a_mined_hash_the_chain_does_not_know_stops_the_runtime(
        test_env: AppConfig, chain: RpcClient) -> None:
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = _confirmed_at_least_one(chain, wallet.address)
    # A transaction of another chain instance: a nonce this chain has used, a hash it has not.
    stranger = _sign(wallet, confirmed - 1, test_env.chain.chain_id, tip_gwei=7)
    ledger = Ledger(test_env.ledger.url)
    ledger.upgrade()
    _record(ledger, "test", stranger, TxStatus.SENT, TxStatus.MINED)
    ledger.dispose()

    with pytest.raises(SystemFault) as raised:
        TradingRuntime.build(test_env, wallet)
    message = str(raised.value)
    assert isinstance(raised.value, LedgerChainMismatch)
    assert stranger.tx_hash in message and wallet.address in message
    assert "no receipt" in message
    assert 'dexpilot ledger archive --env test --reason "..."' in message
    ledger = Ledger(test_env.ledger.url)
    try:
        assert ledger.latest_state("test") == BotState.ERROR.value
        assert any(stranger.tx_hash in e.message for e in _errors(ledger))
    finally:
        ledger.dispose()


def test_a_mined_nonce_the_chain_has_not_reached_is_a_disagreement(
        test_env: AppConfig, chain: RpcClient, tmp_path: Path) -> None:
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    ahead = _sign(wallet, confirmed + 3, test_env.chain.chain_id)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ahead.db'}")
    ledger.upgrade()
    _record(ledger, "test", ahead, TxStatus.MINED, block=5)
    try:
        problems = find_disagreements(ledger, chain, env="test", wallet=wallet.address)
    finally:
        ledger.dispose()
    assert any(f"nonce {confirmed + 3} used by {ahead.tx_hash}" in p
               and f"confirmed nonce count is {confirmed}" in p for p in problems), problems


def test_a_node_a_few_blocks_behind_the_ledger_is_a_stale_endpoint_not_a_disagreement(
        chain: RpcClient, tmp_path: Path, devnet: DevnetManifest) -> None:
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    head = int(chain.request("eth_blockNumber"), 16)
    ledger = Ledger(f"sqlite:///{tmp_path / 'lag.db'}")
    ledger.upgrade()
    # Mined (says the ledger, from another endpoint) two blocks after this node's head.
    _record(ledger, "test", _sign(wallet, confirmed, devnet.chain_id), TxStatus.MINED,
            block=head + 2)
    try:
        with pytest.raises(ApiError, match=f"node at block {head} is behind the ledger"):
            find_disagreements(ledger, chain, env="test", wallet=wallet.address)
    finally:
        ledger.dispose()


def test_a_sent_transaction_that_can_never_be_mined_is_a_disagreement(
        chain: RpcClient, tmp_path: Path, devnet: DevnetManifest) -> None:
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    beyond = _sign(wallet, confirmed + 2, devnet.chain_id)
    ledger = Ledger(f"sqlite:///{tmp_path / 'gap.db'}")
    ledger.upgrade()
    _record(ledger, "test", beyond, TxStatus.SENT)
    try:
        problems = find_disagreements(ledger, chain, env="test", wallet=wallet.address)
    finally:
        ledger.dispose()
    assert len(problems) == 1
    assert beyond.tx_hash in problems[0] and f"nonce {confirmed}" in problems[0]


def test_what_a_kill_leaves_is_no_disagreement_and_reconcile_finishes_it(
        test_env: AppConfig, chain: RpcClient) -> None:
    """Killed after signing (SIGNED, never broadcast) and a SENT one the node forgot (a node
    restart empties its pool) at the next nonces: reconcile's cases, not a wrong chain."""
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    signed_only = _sign(wallet, confirmed, test_env.chain.chain_id)
    forgotten = _sign(wallet, confirmed + 1, test_env.chain.chain_id)
    ledger = Ledger(test_env.ledger.url)
    ledger.upgrade()
    _record(ledger, "test", signed_only)
    _record(ledger, "test", forgotten, TxStatus.SENT)
    assert find_disagreements(ledger, chain, env="test", wallet=wallet.address) == []
    ledger.dispose()

    rt = TradingRuntime.build(test_env, wallet)
    try:
        rt.executor.reconcile()
        for tx in (signed_only, forgotten):
            row = rt.ledger.get_transaction(tx.tx_hash)
            assert row is not None and row.status is TxStatus.MINED, row
    finally:
        rt.close()


def test_the_dev_ledger_follows_its_dev_chain_instance(
        chain: RpcClient, tmp_path: Path, devnet: DevnetManifest) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    wallet = HotWallet(ANVIL_KEY_1)

    def claim(instance: str) -> Path | None:
        return claim_dev_ledger(url, chain, env="dev", chain_id=devnet.chain_id,
                                instance=instance, wallet=wallet.address)

    assert claim("first") is None
    ledger = Ledger(url)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    old_tx = _sign(wallet, confirmed, devnet.chain_id)
    _record(ledger, "dev", old_tx, TxStatus.SENT)
    ledger.dispose()
    assert claim("first") is None  # the same instance: the same ledger

    archived = claim("second")
    assert archived is not None and archived.exists()
    assert archived.parent == tmp_path and archived.name.startswith("ledger-")
    kept, fresh = Ledger(f"sqlite:///{archived}"), Ledger(url)
    try:
        assert kept.get_transaction(old_tx.tx_hash) is not None
        assert fresh.get_transaction(old_tx.tx_hash) is None
        row = current_instance(fresh, "dev")
        assert row is not None and row.instance == "second" and row.actor == "devnet"
        assert row.block_hash is not None and row.block_hash.startswith("0x")
        notes = _instances(fresh)
        assert any(str(archived) in n.reason and "replaces instance first" in n.reason
                   for n in notes), [n.reason for n in notes]
    finally:
        kept.dispose()
        fresh.dispose()


def test_a_dev_ledger_from_before_instances_is_archived_only_if_the_chain_contradicts_it(
        chain: RpcClient, tmp_path: Path, devnet: DevnetManifest) -> None:
    wallet = HotWallet(ANVIL_KEY_1)
    confirmed = NonceManager(chain, wallet.address).confirmed_count()
    agreeing, contradicted = tmp_path / "agree.db", tmp_path / "contra.db"
    for path, nonce in ((agreeing, confirmed), (contradicted, confirmed + 5)):
        ledger = Ledger(f"sqlite:///{path}")
        ledger.upgrade()
        _record(ledger, "dev", _sign(wallet, nonce, devnet.chain_id), TxStatus.MINED
                if path == contradicted else TxStatus.SENT)
        ledger.dispose()

    def claim(path: Path) -> Path | None:
        return claim_dev_ledger(f"sqlite:///{path}", chain, env="dev", chain_id=devnet.chain_id,
                                instance="x", wallet=wallet.address)

    assert claim(agreeing) is None and agreeing.exists()
    archived = claim(contradicted)
    assert archived is not None and archived.exists()


def test_ledger_archive_moves_the_ledger_aside_and_records_who_and_why(
        test_env: AppConfig, tmp_path: Path) -> None:
    ledger = Ledger(test_env.ledger.url)
    ledger.upgrade()
    ledger.record_error("test", ErrorKind.SYSTEM, "startup", "ledger and chain disagree")
    ledger.dispose()
    result = CliRunner().invoke(app, ["ledger", "archive", "--env", "test",
                                      "--reason", "RPC was right; ledger from the old node"])
    assert result.exit_code == 0, result.output
    archived = list(tmp_path.glob("ledger-*.db"))
    assert len(archived) == 1 and str(archived[0]) in result.output
    fresh = Ledger(test_env.ledger.url)
    try:
        assert _errors(fresh) == []
        (note,) = _instances(fresh)
        assert note.actor.startswith("cli:") and "ledger from the old node" in note.reason
    finally:
        fresh.dispose()


def test_ledger_archive_of_a_postgres_ledger_is_refused_and_changes_nothing(
        test_env: AppConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", "postgresql://bot:secret@127.0.0.1:9/ledger")
    result = CliRunner().invoke(app, ["ledger", "archive", "--env", "test", "--reason", "x"])
    assert result.exit_code == 2
    assert "not a SQLite file" in result.output and "secret" not in result.output
    assert list(tmp_path.glob("ledger*")) == []


def _errors(ledger: Ledger) -> list[ErrorRow]:
    with ledger.session(write=False) as session:
        return list(session.exec(select(ErrorRow)).all())


def _instances(ledger: Ledger) -> list[ChainInstanceRow]:
    with ledger.session(write=False) as session:
        return list(session.exec(select(ChainInstanceRow)).all())
