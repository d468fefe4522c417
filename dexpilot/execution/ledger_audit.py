"""Does this ledger belong to this chain? Checked before a runtime trades, and by the dev chain.

A ledger kept across a chain it was not written on (a dev chain restarted from its cached
state, an RPC endpoint pointing at another network or a fork, a database restored from another
deployment) holds nonces and transaction hashes the chain never saw. Reconcile would then
refuse a receipt for a nonce "already used", or wait forever for a nonce that can never land:
a crash in the middle of trading instead of a clear stop at start-up.

What is a disagreement, and what is not:

- a MINED or REVERTED transaction whose nonce the chain has not used yet, or for which the
  chain has no receipt: the chain does not know a transaction the ledger saw mined;
- a SENT transaction the node does not know, above the chain's confirmed nonce, with a nonce
  below it that neither the ledger nor the node's pool fills: it can never be mined.

A SIGNED transaction (written, maybe never broadcast, as after a kill) is normal, and so is a
SENT one the node forgot at the next nonce (a node restart empties its pool): reconcile
re-broadcasts or cancels those by hash and nonce.
A node a few blocks behind the ledger's newest receipt (``LAG_BLOCKS``) is a stale endpoint,
an ``ApiError``, so the caller's failover moves on to the next one.

A dev chain instance has an identity: the random start id that ``start_market`` writes into
the manifest. ``claim_dev_ledger`` keeps the dev ledger on that instance: a ledger of another
instance is archived beside itself and a new one started.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import col, select

from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError, ConfigError, SystemFault
from dexpilot.execution.nonces import NonceManager
from dexpilot.ledger import (
    NONCE_CONSUMING_TX_STATUSES,
    UNRESOLVED_TX_STATUSES,
    ChainInstanceRow,
    Ledger,
    TransactionRow,
    TxStatus,
    checks,
)
from dexpilot.ledger.types import utc_now

log = logging.getLogger(__name__)

# How far behind the ledger's newest receipt a node may be and still count as lagging.
LAG_BLOCKS = 8
# Receipts checked per start: the newest mined transactions are what a wrong chain or a lost
# ledger contradicts first, and a full audit of a long production ledger would be thousands
# of calls before the first cycle.
RECENT_RECEIPTS = 16


class LedgerChainMismatch(SystemFault):
    """The ledger records transactions of wallet A that the chain does not know."""


def archive_command(env: str) -> str:
    return f'dexpilot ledger archive --env {env} --reason "..."'


def find_disagreements(ledger: Ledger, client: RpcClient, *, env: str, wallet: str,
                       recent: int = RECENT_RECEIPTS) -> list[str]:
    """What the ledger records for ``wallet`` that the chain contradicts (empty: they agree)."""
    used = _transactions(ledger, env, wallet, NONCE_CONSUMING_TX_STATUSES,
                         newest_first=True, limit=recent)
    unresolved = _transactions(ledger, env, wallet, UNRESOLVED_TX_STATUSES)
    if not used and not unresolved:
        return []
    newest_block = max((t.block_number or 0 for t in used), default=0)
    head = int(client.request("eth_blockNumber"), 16)
    if head < newest_block <= head + LAG_BLOCKS:
        # A failover endpoint a few blocks behind has not seen our last receipt yet: that is
        # a stale node (switch endpoint), not a ledger of another chain.
        raise ApiError(f"node at block {head} is behind the ledger, whose newest transaction "
                       f"of {wallet} was mined in block {newest_block}")
    nonces = NonceManager(client, wallet)
    confirmed = nonces.confirmed_count()
    problems: list[str] = []
    if used and used[0].nonce >= confirmed:
        top = used[0]
        problems.append(
            f"the ledger has nonce {top.nonce} used by {top.tx_hash} ({top.status}, block "
            f"{top.block_number}) but the chain's confirmed nonce count is {confirmed}")
    receipts = client.batch([("eth_getTransactionReceipt", [t.tx_hash]) for t in used])
    missing = [t for t, r in zip(used, receipts, strict=True) if r is None]
    if missing:
        shown = ", ".join(f"{t.tx_hash} (nonce {t.nonce}, {t.status})" for t in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        problems.append(f"the chain has no receipt for {len(missing)} of the {len(used)} newest "
                        f"mined transactions: {shown}{more}")
    sent = [t for t in unresolved if t.status is TxStatus.SENT and t.nonce > confirmed]
    if sent:
        known = client.batch([("eth_getTransactionByHash", [t.tx_hash]) for t in sent])
        pending = nonces.pending_count()
        filled = {t.nonce for t in unresolved} | set(range(confirmed, pending))
        for tx, seen in zip(sent, known, strict=True):
            gap = [n for n in range(confirmed, tx.nonce) if n not in filled]
            if seen is None and gap:
                problems.append(
                    f"{tx.tx_hash} is SENT with nonce {tx.nonce}, the chain's confirmed nonce "
                    f"count is {confirmed}, the node does not know it and nothing fills "
                    f"nonce {gap[0]}, so it can never be mined")
    return problems


def check_ledger_matches_chain(ledger: Ledger, client: RpcClient, *, env: str, wallet: str,
                               chain_id: int) -> None:
    """Raise ``LedgerChainMismatch`` (a ``SystemFault``) naming what disagrees and the fix."""
    problems = find_disagreements(ledger, client, env=env, wallet=wallet)
    if not problems:
        return
    raise LedgerChainMismatch(
        f"ledger {ledger.url} and chain {chain_id} disagree for wallet A {wallet} ({env}): "
        + "; ".join(problems)
        + ". Either the RPC endpoint serves another chain (fix chain.rpc_urls, then "
        f"`dexpilot state resume --env {env}`) or the ledger belongs to an earlier chain: "
        f"`{archive_command(env)}` moves it aside and the next start begins a new ledger.")


# -- which chain instance a ledger follows -----------------------------------------------
def current_instance(ledger: Ledger, env: str) -> ChainInstanceRow | None:
    """The newest recorded chain instance of ``env`` (rows an archive writes carry none)."""
    statement = (select(ChainInstanceRow).where(ChainInstanceRow.env == env)
                 .where(col(ChainInstanceRow.instance).is_not(None))
                 .order_by(col(ChainInstanceRow.created_at).desc(),
                           col(ChainInstanceRow.id).desc()).limit(1))
    with ledger.session(write=False) as session:
        return session.exec(statement).first()


def record_instance(ledger: Ledger, *, env: str, chain_id: int, instance: str | None,
                    block_hash: str | None, actor: str, reason: str) -> ChainInstanceRow:
    row = ChainInstanceRow(created_at=utc_now(), env=env, chain_id=chain_id, instance=instance,
                           block_hash=block_hash, actor=actor, reason=reason)
    with ledger.session() as session:
        session.add(row)
    log.info("ledger %s: %s (by %s)", ledger.url, reason, actor,
                extra={"env": env, "actor": actor, "reason": reason, "instance": instance})
    return row


def sqlite_path(url: str) -> Path:
    """The file of a SQLite ledger URL; ``ConfigError`` for any other database."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        raise ConfigError(
            f"ledger {parsed.render_as_string(hide_password=True)} is not a SQLite file; only "
            "a SQLite ledger is archived by moving it. For PostgreSQL create a new database, "
            "point ledger.url at it and run `dexpilot ledger upgrade --url URL`; keep the old "
            "one for the audit. Nothing was changed.")
    return Path(database).expanduser()


def archive_ledger(url: str, *, env: str, chain_id: int, actor: str, reason: str) -> Path:
    """Move a SQLite ledger aside as ``ledger-<UTC time>.db`` and start a new, empty one that
    records who archived which file and why. Returns the archived file."""
    if not actor.strip() or not reason.strip():
        raise ConfigError("archiving a ledger needs an actor and a reason")
    path = sqlite_path(url)
    if not path.exists():
        raise ConfigError(f"ledger file {path} does not exist: nothing to archive")
    old = Ledger(url)
    try:
        # Everything into the main file, so moving it (and its -wal/-shm) loses nothing.
        with old.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.dispose()
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
    shutil.move(path, target)
    for side in ("-wal", "-shm"):
        extra = path.with_name(path.name + side)
        if extra.exists():
            shutil.move(extra, target.with_name(target.name + side))
    fresh = Ledger(url)
    try:
        fresh.upgrade()
        record_instance(fresh, env=env, chain_id=chain_id, instance=None, block_hash=None,
                        actor=actor, reason=f"previous ledger archived to {target}: {reason}")
    finally:
        fresh.dispose()
    return target


def claim_dev_ledger(url: str, client: RpcClient, *, env: str, chain_id: int, instance: str,
                     wallet: str, actor: str = "devnet") -> Path | None:
    """Make the SQLite ledger at ``url`` follow the dev chain ``instance``.

    The same instance: nothing to do. A ledger of another instance, or one with no instance
    recorded whose transactions this chain does not know, is archived and a new one started
    (returns the archived file). A ledger with no instance and nothing the chain contradicts
    (new, or from before instances were recorded) is kept and recorded as this instance's.
    """
    block_hash = _block_one_hash(client)
    ledger = Ledger(url)
    try:
        ledger.upgrade()
        current = current_instance(ledger, env)
        if current is not None and current.instance == instance:
            return None
        if current is None:
            try:
                problems = find_disagreements(ledger, client, env=env, wallet=wallet)
            except ApiError as exc:  # a local dev chain does not lag: it is another chain
                problems = [str(exc)]
            if not problems:
                record_instance(ledger, env=env, chain_id=chain_id, instance=instance,
                                block_hash=block_hash, actor=actor,
                                reason=f"dev chain instance {instance} adopts this ledger")
                return None
            why = "it holds transactions the new dev chain does not know: " + problems[0]
        else:
            why = f"dev chain instance {instance} replaces instance {current.instance}"
    finally:
        ledger.dispose()
    archived = archive_ledger(url, env=env, chain_id=chain_id, actor=actor, reason=why)
    fresh = Ledger(url)
    try:
        record_instance(fresh, env=env, chain_id=chain_id, instance=instance,
                        block_hash=block_hash, actor=actor,
                        reason=f"dev chain instance {instance} starts this ledger")
    finally:
        fresh.dispose()
    return archived


def _block_one_hash(client: RpcClient) -> str | None:
    block = client.request("eth_getBlockByNumber", ["0x1", False])
    return str(block["hash"]) if block else None


def _transactions(ledger: Ledger, env: str, wallet: str, statuses: Iterable[TxStatus], *,
                  newest_first: bool = False, limit: int | None = None) -> list[TransactionRow]:
    order = col(TransactionRow.nonce).desc() if newest_first else col(TransactionRow.nonce)
    statement = (select(TransactionRow).where(TransactionRow.env == env)
                 .where(TransactionRow.wallet == checks.address(wallet, "wallet"))
                 .where(col(TransactionRow.status).in_(sorted(statuses)))
                 .order_by(order, col(TransactionRow.id)))
    if limit is not None:
        statement = statement.limit(limit)
    with ledger.session(write=False) as session:
        return list(session.exec(statement).all())

