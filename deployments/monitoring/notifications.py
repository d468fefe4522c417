"""Prefect's own notification path: a webhook notification block and an automation that
sends through it whenever a dexpilot flow run fails (or crashes).

Independent of Prometheus: if the bot cannot even push metrics (a flow run crashed before its
first cycle), Prefect still tells someone. Run it once per Prefect server:

    python -m deployments.monitoring.notifications --webhook-url https://hooks.example/...

It is idempotent: an existing block or automation of the same name is updated in place.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

BLOCK_NAME = "dexpilot-alerts"
AUTOMATION_NAME = "dexpilot-flow-run-failed"
FAILED_EVENTS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
SUBJECT = "dexpilot: flow run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "Flow {{ flow.name }} run {{ flow_run.name }} entered {{ flow_run.state.name }} at "
    "{{ flow_run.state.timestamp }}: {{ flow_run.state.message }}\n"
    "Parameters: env={{ flow_run.parameters.env }}"
)


@dataclass(frozen=True)
class NotificationSetup:
    block_document_id: UUID
    automation_id: UUID


def ensure_failure_notifications(webhook_url: str, *, block_name: str = BLOCK_NAME,
                                 automation_name: str = AUTOMATION_NAME) -> NotificationSetup:
    """Create (or update) the webhook block and the flow-run-failed automation."""
    block = CustomWebhookNotificationBlock(
        name="dexpilot", url=webhook_url, method="POST",
        json_data={"title": "{{subject}}", "text": "{{body}}"},
        allow_private_urls=webhook_url.startswith(("http://127.", "http://localhost")),
        headers=None, cookies=None,
    )
    block_id = cast(UUID, block.save(block_name, overwrite=True))
    trigger = EventTrigger(
        expect=FAILED_EVENTS,
        match={"prefect.resource.id": "prefect.flow-run.*"},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )
    action = SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(automation_name):
            client.delete_automation(old.id)
    automation = cast(Automation, Automation(
        name=automation_name, description="Notify when a dexpilot flow run fails or crashes",
        enabled=True, trigger=trigger, actions=[action],
    ).create())
    assert automation.id is not None
    return NotificationSetup(block_id, automation.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhook-url", required=True)
    args = parser.parse_args()
    setup = ensure_failure_notifications(args.webhook_url)
    print(f"block {BLOCK_NAME} ({setup.block_document_id}), automation {AUTOMATION_NAME} "
          f"({setup.automation_id})")


if __name__ == "__main__":
    main()
