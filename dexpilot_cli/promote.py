"""`dexpilot promote ...`: the promotion history (the promotion itself runs in Prefect:
`prefect deployment run 'promote/ci' --param ref=<git sha>`).

The history is stored in Prefect, as versions of the table artifact ``promotion-history``
(one per attempt), so it needs ``PREFECT_API_URL`` (and ``PREFECT_API_AUTH_STRING`` behind
auth) like the prefect CLI.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Staged promotion: test -> staging -> prod.")


@app.command()
def history(
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="how many attempts")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (newest first)")] = False,
) -> None:
    """List the last promotion attempts, newest first: ref, outcome, the gate that stopped it."""
    from tasks.promote import promotion_history

    try:
        records = promotion_history(last)
    except Exception as exc:  # unreachable server, bad credentials
        Console(stderr=True).print(f"[bold red]error:[/] cannot read the promotion history: "
                                   f"{escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    out = Console(highlight=False, soft_wrap=True)
    if not records:
        out.print("no promotions recorded yet")
        return
    table = Table(title=f"last {len(records)} promotion(s)", title_justify="left")
    for name in ("finished (UTC)", "ref", "commit", "status", "stopped at", "reason"):
        table.add_column(name)
    for r in records:
        table.add_row(r.finished_at, escape(r.ref), r.sha[:12], r.status, r.failed_gate or "",
                      escape(r.reason))
    out.print(table)
