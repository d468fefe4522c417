"""Swap-event ingestion: every configured pool's ``Swap`` logs into the ledger, exactly once.

``SwapIngestor.run()`` reads ``eth_getLogs`` for *all* pools in one request per block range
(the filter's ``address`` is a list, ``topics[0]`` is either Swap signature), fetches the
timestamps of the blocks that had swaps in one JSON-RPC batch per range, and stores each event
with raw integer amounts, its block number, hash and time, pool, transaction hash and log
index. Everything goes through ``RpcClient``.

- **Large ranges refused**: providers cap ``eth_getLogs`` (Infura: -32005 "query returned more
  than 10000 results", others "block range too large" / "limited to a 10000 block range"...).
  A refused range is halved until it passes (down to one block); the smaller step is kept
  for the rest of the run.
- **Resume**: a cursor per pool (``ingest_cursors``) says how far it has been read; each range
  is stored together with the cursor advance in one transaction, so a crash mid-run loses
  nothing and repeats nothing. A pool added later is read from ``start_block``.
- **Exactly once**: ``(tx_hash, log_index)`` is unique in ``swap_events``; inserts skip
  events already stored.
- **Reorgs**: each run re-reads the last ``reorg_depth`` blocks below the cursor and first
  deletes stored events whose block hash is no longer the canonical hash at their height, so
  events of a short reorg are replaced by the new chain's. Reorgs deeper than ``reorg_depth``
  are not repaired (pick it above the chain's finality depth, or use ``confirmations``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from eth_abi import decode
from eth_utils import keccak, to_checksum_address
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError
from dexpilot.ledger.models import IngestCursorRow, SwapEventRow
from dexpilot.ledger.store import Ledger
from dexpilot.ledger.types import utc_now
from dexpilot.market.pools import PoolKind, PoolRef

V2_SWAP_TOPIC = "0x" + keccak(
    text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
V3_SWAP_TOPIC = "0x" + keccak(
    text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
SWAP_STREAM = "swaps"
DEFAULT_MAX_RANGE = 2_000
DEFAULT_REORG_DEPTH = 12
MAX_BLOCK_RETRIES = 3

# What providers answer when an eth_getLogs range is too large (message texts; the JSON-RPC
# code, e.g. -32005, is not kept by RpcClient's ApiError).
_RANGE_REFUSALS = re.compile(
    r"more than \d+ results|block range|range (is )?too (large|wide|big)|too many (blocks|logs"
    r"|results)|limit(ed)? (is |to )?(a )?\d[\d,]* (block|range)|exceed(s|ed)? (the )?maximum"
    r"|response size (is )?(exceeded|too large)|query timeout|-32005",
    re.IGNORECASE,
)


def is_range_refusal(exc: ApiError) -> bool:
    """True if the node refused an ``eth_getLogs`` range for its size (so a smaller one may
    pass), not for anything else."""
    return bool(_RANGE_REFUSALS.search(str(exc)))


@dataclass(frozen=True, slots=True)
class SwapEvent:
    """One decoded ``Swap`` log; amounts raw and non-negative (see ``SwapEventRow``)."""

    pool: str
    block_number: int
    block_hash: str
    block_time: datetime
    tx_hash: str
    log_index: int
    sender: str
    recipient: str
    amount0_in: int
    amount1_in: int
    amount0_out: int
    amount1_out: int
    sqrt_price_x96: int | None = None
    liquidity: int | None = None
    tick: int | None = None

    def row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def decode_swap_log(log: Mapping[str, Any], pool: PoolRef, block_time: datetime) -> SwapEvent:
    """A ``Swap`` log of ``pool`` as returned by ``eth_getLogs``; ApiError if it is not one."""
    topics = [str(t).lower() for t in log.get("topics") or []]
    expected = V2_SWAP_TOPIC if pool.kind is PoolKind.V2 else V3_SWAP_TOPIC
    if len(topics) != 3 or topics[0] != expected:
        raise ApiError(f"log {log.get('transactionHash')}#{log.get('logIndex')} of "
                       f"{pool.address} is not a {pool.kind.value} Swap")
    try:
        data = bytes.fromhex(str(log["data"]).removeprefix("0x"))
        where = _Where(
            pool=pool.address,
            block_number=int(log["blockNumber"], 16),
            block_hash=str(log["blockHash"]).lower(),
            tx_hash=str(log["transactionHash"]).lower(),
            log_index=int(log["logIndex"], 16),
            sender=to_checksum_address("0x" + topics[1][-40:]),
            recipient=to_checksum_address("0x" + topics[2][-40:]),
        )
        if pool.kind is PoolKind.V2:
            a0_in, a1_in, a0_out, a1_out = decode(["uint256"] * 4, data)
            return where.event(block_time, a0_in, a1_in, a0_out, a1_out)
        amount0, amount1, sqrt_price, liquidity, tick = decode(
            ["int256", "int256", "uint160", "uint128", "int24"], data)
    except ApiError:
        raise
    except Exception as exc:  # KeyError, ValueError, eth_abi's DecodingError family
        raise ApiError(f"undecodable Swap log of {pool.address}: {exc!r}") from exc
    return where.event(block_time, max(amount0, 0), max(amount1, 0), max(-amount0, 0),
                       max(-amount1, 0), sqrt_price_x96=sqrt_price, liquidity=liquidity,
                       tick=tick)


@dataclass(frozen=True, slots=True)
class _Where:
    pool: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    sender: str
    recipient: str

    def event(self, block_time: datetime, amount0_in: int, amount1_in: int, amount0_out: int,
              amount1_out: int, *, sqrt_price_x96: int | None = None,
              liquidity: int | None = None, tick: int | None = None) -> SwapEvent:
        return SwapEvent(self.pool, self.block_number, self.block_hash, block_time,
                         self.tx_hash, self.log_index, self.sender, self.recipient,
                         amount0_in, amount1_in, amount0_out, amount1_out, sqrt_price_x96,
                         liquidity, tick)


@dataclass
class IngestReport:
    from_block: int
    to_block: int
    inserted: int = 0
    duplicates: int = 0
    removed: int = 0  # stored events of reorganised blocks, deleted
    log_requests: int = 0
    refusals: int = 0  # ranges the node refused (each halved the step)
    step: int = 0  # the block range per request at the end of the run
    changed_since: datetime | None = None  # earliest block time of an inserted/removed event
    pools: list[str] = field(default_factory=list)

    def _touch(self, when: datetime) -> None:
        if self.changed_since is None or when < self.changed_since:
            self.changed_since = when


class SwapIngestor:
    """Reads the ``Swap`` logs of ``pools`` into ``ledger`` (tables of migration 0003)."""

    def __init__(
        self,
        client: RpcClient,
        ledger: Ledger,
        pools: Sequence[PoolRef],
        *,
        start_block: int = 0,
        max_range: int = DEFAULT_MAX_RANGE,
        reorg_depth: int = DEFAULT_REORG_DEPTH,
        confirmations: int = 0,
        stream: str = SWAP_STREAM,
    ) -> None:
        if not pools:
            raise ValueError("SwapIngestor needs at least one pool")
        if max_range < 1 or reorg_depth < 0 or confirmations < 0 or start_block < 0:
            raise ValueError("max_range must be >= 1; reorg_depth, confirmations and "
                             "start_block >= 0")
        self.client = client
        self.ledger = ledger
        self.pools = {p.address.lower(): p for p in pools}
        if len(self.pools) != len(pools):
            raise ValueError("SwapIngestor: a pool is listed twice")
        self.start_block = start_block
        self.max_range = max_range
        self.reorg_depth = reorg_depth
        self.confirmations = confirmations
        self.stream = stream
        self.step = max_range

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.pools.values()]

    # -- the run -------------------------------------------------------------------------
    def run(self, to_block: int | None = None) -> IngestReport:
        """Read from each pool's cursor (less the re-read window) up to ``to_block`` (default:
        the head less ``confirmations``); returns what changed."""
        head = int(self.client.request("eth_blockNumber"), 16) - self.confirmations
        end = head if to_block is None else min(to_block, head)
        cursors = self.cursors()
        lowest = min(cursors.get(a, self.start_block - 1) for a in self.addresses)
        begin = max(self.start_block, lowest - self.reorg_depth + 1)
        report = IngestReport(begin, end, pools=self.addresses)
        self._drop_reorged(begin, report)
        start = begin
        while start <= end:
            stop = min(start + self.step - 1, end)
            try:
                logs = self._get_logs(start, stop, report)
            except ApiError as exc:
                if stop == start or not is_range_refusal(exc):
                    raise
                report.refusals += 1
                self.step = max(1, (stop - start + 1) // 2)
                continue
            events = self._with_times(logs)
            self._store(events, stop, report)
            start = stop + 1
        if begin > end:  # nothing to read (e.g. the chain got shorter): the cursor follows it
            self._advance_cursors(end, report)
        report.step = self.step
        return report

    def cursors(self) -> dict[str, int]:
        with self.ledger.session(write=False) as session:
            rows = session.exec(select(IngestCursorRow).where(
                IngestCursorRow.stream == self.stream)).all()
        return {r.pool: r.last_block for r in rows if r.pool.lower() in self.pools}

    # -- chain reads ---------------------------------------------------------------------
    def _get_logs(self, start: int, stop: int, report: IngestReport) -> list[dict[str, Any]]:
        report.log_requests += 1
        logs = self.client.request("eth_getLogs", [{
            "address": self.addresses,
            "topics": [[V2_SWAP_TOPIC, V3_SWAP_TOPIC]],
            "fromBlock": hex(start),
            "toBlock": hex(stop),
        }])
        if not isinstance(logs, list):
            raise ApiError(f"eth_getLogs {start}..{stop} answered with a {type(logs).__name__}")
        return [log for log in logs if isinstance(log, dict) and not log.get("removed")]

    def _with_times(self, logs: list[dict[str, Any]]) -> list[SwapEvent]:
        """Decode ``logs`` with their blocks' timestamps, fetched in one batch. A log whose
        block hash is not the one the node now reports at that height (a reorg between the two
        calls) is refused: the next run re-reads that range."""
        if not logs:
            return []
        numbers = sorted({int(log["blockNumber"], 16) for log in logs})
        blocks = self.client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        by_number: dict[int, tuple[str, datetime]] = {}
        for number, block in zip(numbers, blocks, strict=True):
            if not isinstance(block, dict):
                raise ApiError(f"block {number} is missing (chain reorganised while reading)")
            by_number[number] = (str(block["hash"]).lower(),
                                 datetime.fromtimestamp(int(block["timestamp"], 16), UTC))
        events = []
        for log in logs:
            pool = self.pools.get(str(log.get("address", "")).lower())
            if pool is None:
                raise ApiError(f"eth_getLogs returned a log of {log.get('address')}, "
                               "which was not asked for")
            block_hash, when = by_number[int(log["blockNumber"], 16)]
            if str(log["blockHash"]).lower() != block_hash:
                raise ApiError(f"block {int(log['blockNumber'], 16)} changed hash while being "
                               "read (reorg); run again")
            events.append(decode_swap_log(log, pool, when))
        return events

    def _canonical_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        if not numbers:
            return {}
        blocks = self.client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {n: (str(b["hash"]).lower() if isinstance(b, dict) else None)
                for n, b in zip(numbers, blocks, strict=True)}

    # -- ledger writes -------------------------------------------------------------------
    def _drop_reorged(self, begin: int, report: IngestReport) -> None:
        """Delete stored events at or above ``begin`` whose block is no longer canonical."""
        pools = self.addresses
        with self.ledger.session(write=False) as session:
            stored = session.exec(
                select(SwapEventRow.block_number, SwapEventRow.block_hash,
                       sa.func.min(SwapEventRow.block_time))
                .where(col(SwapEventRow.pool).in_(pools))
                .where(col(SwapEventRow.block_number) >= begin)
                .group_by(col(SwapEventRow.block_number), col(SwapEventRow.block_hash))
            ).all()
        canonical = self._canonical_hashes(sorted({n for n, _, _ in stored}))
        stale = [(n, h, t) for n, h, t in stored if canonical.get(n) != h]
        if not stale:
            return
        with self.ledger.session() as session:
            for number, block_hash, when in stale:
                result = session.execute(
                    sa.delete(SwapEventRow)
                    .where(col(SwapEventRow.pool).in_(pools))
                    .where(col(SwapEventRow.block_number) == number)
                    .where(col(SwapEventRow.block_hash) == block_hash)
                )
                report.removed += int(getattr(result, "rowcount", 0) or 0)
                report._touch(when)

    def _store(self, events: list[SwapEvent], last_block: int, report: IngestReport) -> None:
        """Insert the new events and advance every pool's cursor to ``last_block``, in one
        transaction."""
        with self.ledger.session() as session:
            fresh = self._not_stored(session, events)
            report.duplicates += len(events) - len(fresh)
            if fresh:
                table = SwapEventRow.__table__  # type: ignore[attr-defined]
                dialect = postgresql if self.ledger.backend == "postgresql" else sqlite
                statement = dialect.insert(table).on_conflict_do_nothing(
                    index_elements=["tx_hash", "log_index"])
                session.execute(statement, [e.row() for e in fresh])
                report.inserted += len(fresh)
                for event in fresh:
                    report._touch(event.block_time)
            self._set_cursors(session, last_block)

    def _advance_cursors(self, last_block: int, report: IngestReport) -> None:
        with self.ledger.session() as session:
            self._set_cursors(session, last_block)

    def _set_cursors(self, session: Session, last_block: int) -> None:
        rows = {r.pool.lower(): r for r in session.exec(
            select(IngestCursorRow).where(IngestCursorRow.stream == self.stream)).all()}
        now = utc_now()
        for pool in self.pools.values():
            row = rows.get(pool.address.lower())
            if row is None:
                session.add(IngestCursorRow(stream=self.stream, pool=pool.address,
                                            last_block=last_block, updated_at=now))
            else:
                row.last_block = last_block
                row.updated_at = now
                session.add(row)

    @staticmethod
    def _not_stored(session: Session, events: list[SwapEvent]) -> list[SwapEvent]:
        if not events:
            return []
        hashes = sorted({e.tx_hash for e in events})
        existing = set(session.exec(
            select(SwapEventRow.tx_hash, SwapEventRow.log_index)
            .where(col(SwapEventRow.tx_hash).in_(hashes))
        ).all())
        seen: set[tuple[str, int]] = set()
        fresh = []
        for event in events:
            key = (event.tx_hash, event.log_index)
            if key not in existing and key not in seen:
                seen.add(key)
                fresh.append(event)
        return fresh


def stored_swaps(
    ledger: Ledger,
    pools: Iterable[PoolRef],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[SwapEventRow]:
    """Stored swap events of ``pools`` with ``start <= block_time < end``, in chain order."""
    addresses = [p.address for p in pools]
    statement = select(SwapEventRow).where(col(SwapEventRow.pool).in_(addresses))
    if start is not None:
        statement = statement.where(col(SwapEventRow.block_time) >= start)
    if end is not None:
        statement = statement.where(col(SwapEventRow.block_time) < end)
    statement = statement.order_by(col(SwapEventRow.block_number), col(SwapEventRow.log_index))
    with ledger.session(write=False) as session:
        return list(session.exec(statement).all())
