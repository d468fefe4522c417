"""The risk engine: runs the checks in the seed's order and returns one decision per trade.

Order (diagram 5, plus the operational rules): the kill switch, then fund limits, slippage,
exposure, and the operational checks (gas price, gas balance, reference price). The first
rejection decides; warnings from the checks that passed are kept. The engine does no I/O: the
caller stores every decision (``ledger.record_risk_decision(**decision.record())``), counts
rejections, and sends only approved trades to the executor. A rejection never reaches the chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dexpilot.config import RiskLimits
from dexpilot.money import Token
from dexpilot.risk.checks import (
    GROUP_ORDER,
    Detail,
    KillSwitchCheck,
    Outcome,
    RiskCheck,
    RiskContext,
    RiskVerdict,
    TradeProposal,
    default_checks,
    same_token,
)

if TYPE_CHECKING:
    from dexpilot.config import AppConfig

APPROVED_RULE = "all"
GROUP_RULE = "order_group"


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The engine's answer for one proposal.

    ``rule`` is the name of the deciding check, or ``"all"`` when every check passed; ``group``
    is that check's group (``"fund"``, ``"slippage"``, ...; ``"all"`` on approval). ``reason``
    is a sentence naming the rule and its numbers. ``details`` holds JSON-safe scalars only
    (raw amounts as decimal strings). ``system_fault``: the rejection means the bot cannot go on
    safely (gas balance too low): the caller moves the bot to ERROR.
    """

    client_order_id: str
    approved: bool
    rule: str
    reason: str
    warnings: tuple[str, ...] = ()
    details: Mapping[str, Detail] = field(default_factory=dict)
    group: str = APPROVED_RULE
    system_fault: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", dict(self.details))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    def record(self) -> dict[str, Any]:
        """Keyword arguments for ``Ledger.record_risk_decision``; warnings go into details."""
        details: dict[str, Any] = dict(self.details)
        details["group"] = self.group
        if self.warnings:
            details["warnings"] = list(self.warnings)
        if self.system_fault:
            details["system_fault"] = 1
        return {
            "client_order_id": self.client_order_id,
            "approved": self.approved,
            "rule": self.rule,
            "reason": self.reason,
            "details": details,
        }


class RiskEngine:
    """Runs ``checks`` (default: ``default_checks``) in order; the first rejection decides.

    ``tokens`` are the configured tokens: the allowlist check compares addresses and decimals
    with them, and the exposure check takes holdings' decimals from them. Custom ``checks``
    must keep the group order control -> fund -> slippage -> exposure -> operational; the kill
    switch check is put first if they leave it out.
    """

    def __init__(
        self,
        limits: RiskLimits,
        quote_token: Token,
        tokens: Iterable[Token],
        *,
        native_symbol: str = "ETH",
        checks: Sequence[RiskCheck] | None = None,
    ) -> None:
        if not isinstance(limits, RiskLimits):
            raise TypeError(f"limits must be a RiskLimits, got {type(limits).__name__}")
        if not isinstance(quote_token, Token):
            raise TypeError(f"quote_token must be a Token, got {type(quote_token).__name__}")
        token_list = list(tokens)
        if not any(isinstance(t, Token) and same_token(t, quote_token) for t in token_list):
            raise ValueError(
                f"quote token {quote_token.symbol} ({quote_token.address}) is not among the "
                f"configured tokens"
            )
        self.limits = limits
        self.quote_token = quote_token
        if checks is None:
            chosen = default_checks(
                limits, quote_token, tokens=token_list, native_symbol=native_symbol
            )
        else:
            chosen = list(checks)
            if not any(c.name == KillSwitchCheck.name for c in chosen):
                chosen.insert(0, KillSwitchCheck(limits, quote_token))
        self.checks: tuple[RiskCheck, ...] = tuple(chosen)
        self._validate_checks()

    @classmethod
    def from_config(cls, config: AppConfig, *, native_symbol: str = "ETH") -> RiskEngine:
        """The default engine for one environment: its limits, quote token and tokens."""
        return cls(
            config.risk,
            config.token(config.strategy.quote_token),
            [t.token() for t in config.tokens],
            native_symbol=native_symbol,
        )

    def _validate_checks(self) -> None:
        seen: set[str] = set()
        rank = -1
        for check in self.checks:
            if not isinstance(check, RiskCheck):
                raise TypeError(f"checks must be RiskChecks, got {type(check).__name__}")
            if check.name in seen:
                raise ValueError(f"two checks are named {check.name!r}")
            seen.add(check.name)
            if check.group not in GROUP_ORDER:
                raise ValueError(
                    f"check {check.name!r} has unknown group {check.group!r} "
                    f"(groups: {', '.join(GROUP_ORDER)})"
                )
            if GROUP_ORDER.index(check.group) < rank:
                raise ValueError(
                    f"check {check.name!r} ({check.group}) comes after a later group: the order "
                    f"is {' -> '.join(GROUP_ORDER)}"
                )
            rank = GROUP_ORDER.index(check.group)
        if self.checks[0].name != KillSwitchCheck.name:
            raise ValueError("the kill switch check must run first")

    @property
    def check_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks)

    def _consistent(self, proposal: TradeProposal) -> None:
        q = self.quote_token
        who = f"proposal {proposal.client_order_id}"
        if same_token(proposal.token_in, q) and proposal.amount_in_quote != proposal.amount_in:
            raise ValueError(
                f"{who}: sells the quote token {q.symbol}, so amount_in_quote "
                f"({proposal.amount_in_quote}) must equal amount_in ({proposal.amount_in})"
            )
        if same_token(proposal.token_out, q) and (
            proposal.expected_out_quote != proposal.expected_out
        ):
            raise ValueError(
                f"{who}: buys the quote token {q.symbol}, so expected_out_quote "
                f"({proposal.expected_out_quote}) must equal expected_out "
                f"({proposal.expected_out})"
            )

    def _common_details(self, proposal: TradeProposal) -> dict[str, Detail]:
        intent = proposal.intent
        details: dict[str, Detail] = {
            "client_order_id": intent.client_order_id,
            "strategy": intent.strategy,
            "token_in": intent.token_in.symbol,
            "token_out": intent.token_out.symbol,
            "amount_in": str(intent.amount_in),
            "expected_out": str(proposal.expected_out),
            "min_out": str(proposal.min_out),
            "amount_in_quote": str(proposal.amount_in_quote),
            "expected_out_quote": str(proposal.expected_out_quote),
            "quote_token": self.quote_token.symbol,
            "venues": ",".join(proposal.venues),
            "price_impact_bps": float(proposal.price_impact_bps),
        }
        if intent.group_id is not None:
            details["group_id"] = intent.group_id
        return details

    def evaluate(self, proposal: TradeProposal, context: RiskContext) -> RiskDecision:
        """Run every check on ``proposal``; stop at the first rejection."""
        if not isinstance(proposal, TradeProposal):
            raise TypeError(f"proposal must be a TradeProposal, got {type(proposal).__name__}")
        if not isinstance(context, RiskContext):
            raise TypeError(f"context must be a RiskContext, got {type(context).__name__}")
        self._consistent(proposal)
        common = self._common_details(proposal)
        warnings: list[str] = []
        passed: dict[str, Detail] = {}
        for check in self.checks:
            verdict = check.check(proposal, context)
            if not isinstance(verdict, RiskVerdict):
                raise TypeError(f"check {check.name!r} returned {type(verdict).__name__}")
            if verdict.rejected:
                return RiskDecision(
                    client_order_id=proposal.client_order_id,
                    approved=False,
                    rule=check.name,
                    reason=verdict.reason,
                    warnings=tuple(warnings),
                    details={**common, **verdict.details},
                    group=check.group,
                    system_fault=verdict.system_fault,
                )
            if verdict.outcome is Outcome.WARN:
                warnings.append(verdict.reason)
            passed.update({f"{check.name}.{k}": v for k, v in verdict.details.items()})
        reason = f"approved: all {len(self.checks)} checks passed"
        if warnings:
            reason += f" with {len(warnings)} warning(s): " + "; ".join(warnings)
        return RiskDecision(
            client_order_id=proposal.client_order_id,
            approved=True,
            rule=APPROVED_RULE,
            reason=reason,
            warnings=tuple(warnings),
            details={**common, **passed},
        )

    def evaluate_batch(
        self, proposals: Sequence[TradeProposal], context: RiskContext
    ) -> list[RiskDecision]:
        """Decide several orders of one cycle, in order, each against the context left by the
        approved ones before it (``RiskContext.after``), so one cycle cannot exceed a limit that
        each order alone respects.

        Orders sharing an intent ``group_id`` (the legs of one arbitrage) are all or nothing:
        if one leg is rejected, every leg of the group is rejected (rule ``order_group``) and
        the group leaves the context unchanged. Decisions come back in the proposals' order.

        The legs of a group must be adjacent: the batch is decided in the order it will be
        executed, and a group decided as one unit cannot have other orders run between its
        legs (a sale approved on the strength of a later leg's output would fail on chain).
        """
        ids = [p.client_order_id for p in proposals]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate client_order_id in one batch: {', '.join(duplicates)}")
        units: dict[str, list[TradeProposal]] = {}
        previous: str | None = None
        for p in proposals:
            group_id = p.intent.group_id
            key = f"group:{group_id}" if group_id else f"order:{p.client_order_id}"
            if key in units and key != previous:
                raise ValueError(
                    f"the legs of order group {group_id} are not adjacent in the batch "
                    f"(at {p.client_order_id}): other orders would execute between them")
            units.setdefault(key, []).append(p)
            previous = key
        decided: dict[str, RiskDecision] = {}
        current = context
        for legs in units.values():
            tentative = current
            decisions: list[RiskDecision] = []
            for leg in legs:
                decision = self.evaluate(leg, tentative)
                decisions.append(decision)
                if not decision.approved:
                    break
                tentative = tentative.after(leg)
            failed = decisions[-1]
            if failed.approved:
                current = tentative
                decided.update((d.client_order_id, d) for d in decisions)
                continue
            decided[failed.client_order_id] = failed
            for leg in legs:
                if leg.client_order_id == failed.client_order_id:
                    continue
                decided[leg.client_order_id] = RiskDecision(
                    client_order_id=leg.client_order_id,
                    approved=False,
                    rule=GROUP_RULE,
                    reason=(
                        f"order_group: leg {failed.client_order_id} of group "
                        f"{leg.intent.group_id} was rejected by {failed.rule} "
                        f"({failed.reason}); the group trades all legs or none"
                    ),
                    details={
                        **self._common_details(leg),
                        "rejected_leg": failed.client_order_id,
                        "rejected_by": failed.rule,
                    },
                    group=GROUP_RULE,
                )
        return [decided[i] for i in ids]
