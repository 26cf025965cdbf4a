"""Webhooks: subscriptions, their deliveries, ping and redeliver (README "Webhooks").

The webhook DTOs live here with the only handlers that use them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.dto import DTOConfig
from litestar.params import JSONBody

from app.controllers.params import (
    IdempotencyKeyHeader,
    IfMatch,
    Limit,
    ObjectId,
    Offset,
    UserRequest,
    created,
    expected_version,
    idempotency,
    mark_replayed,
    with_etag,
)
from app.dto import ExtraField, Id, Page, PiccoloDTO, StrictDTO, struct_changes
from app.openapi import problem_responses
from app.services import webhooks
from app.tables import Webhook, WebhookDelivery

Url = Annotated[
    str, msgspec.Meta(min_length=1, max_length=2000, description="http(s) URL the deliveries are POSTed to")
]
EventPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Events = Annotated[
    list[EventPattern],
    msgspec.Meta(
        min_length=1,
        max_length=webhooks.MAX_PATTERNS,
        description="Event types (task.created), resource patterns (task.*) or * for every event",
    ),
]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new webhook: where to send, which events, and optionally only one project's."""

    url: Url
    events: Events
    project_id: Id | None = None


class WebhookCreateDTO(StrictDTO[WebhookCreate]):
    __schema_name__ = "WebhookCreate"


class WebhookPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Changes to a webhook; absent fields stay. ``enabled: true`` re-enables a disabled one."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    project_id: Id | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookPatchDTO(StrictDTO[WebhookPatch]):
    __schema_name__ = "WebhookPatch"


WEBHOOK_RENAMES = {"project": "project_id"}


class WebhookReadDTO(PiccoloDTO[Webhook]):
    __schema_name__ = "Webhook"
    config = DTOConfig(exclude={"owner"}, rename_fields=WEBHOOK_RENAMES)


class WebhookCreatedDTO(PiccoloDTO[Webhook]):
    """The create answer: the webhook and, this once, its signing secret."""

    __schema_name__ = "WebhookWithSecret"
    config = DTOConfig(exclude={"owner"}, rename_fields=WEBHOOK_RENAMES)
    extra_fields: ClassVar[dict[str, ExtraField]] = {
        "secret": ExtraField(
            Annotated[str, msgspec.Meta(description="Standard Webhooks signing secret (whsec_...), shown only here")],
            read_only=True,
        )
    }


class WebhookDeliveryReadDTO(PiccoloDTO[WebhookDelivery]):
    __schema_name__ = "WebhookDelivery"
    config = DTOConfig(exclude={"payload", "project_id"}, rename_fields={"webhook": "webhook_id"})


def _allow_private(request: UserRequest) -> bool:
    return bool(request.app.state.settings.webhooks.allow_private)


class WebhookController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    return_dto = WebhookReadDTO

    @post("/", dto=WebhookCreateDTO, return_dto=WebhookCreatedDTO, responses=problem_responses(409, 422))
    async def create_webhook(
        self, request: UserRequest, data: JSONBody[WebhookCreate], idempotency_key: IdempotencyKeyHeader = None
    ) -> Response[Webhook]:
        """Create a webhook. The answer holds its signing ``secret``, shown only this once.

        A URL that is not http(s), does not resolve, or resolves to a loopback, private,
        link-local or other non-public address is a 422 naming ``url``; so are unknown event
        types (``events``) and a project the caller is not a member of (``project_id``). A
        user has at most 100 webhooks (409).
        """
        webhook, secret, replayed = await webhooks.create_webhook(
            request.user.id,
            url=data.url,
            events=data.events,
            project_id=data.project_id,
            allow_private=_allow_private(request),
            idempotency=await idempotency(request, idempotency_key),
        )
        webhook.__dict__["secret"] = secret
        return created(request, webhook, f"{self.path}/{webhook.id}", webhook.version, replayed)

    @get("/")
    async def list_webhooks(self, request: UserRequest, limit: Limit = 20, offset: Offset = 0) -> Page[Webhook]:
        """The caller's webhooks, oldest first."""
        items, total = await webhooks.list_webhooks(request.user.id, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/{webhook_id:int}")
    async def get_webhook(self, request: UserRequest, webhook_id: ObjectId) -> Response[Webhook]:
        """One webhook (never its secret)."""
        webhook = await webhooks.get_webhook(request.user.id, webhook_id)
        return with_etag(webhook, webhook.version)

    @patch("/{webhook_id:int}", dto=WebhookPatchDTO, responses=problem_responses(422))
    async def update_webhook(
        self, request: UserRequest, webhook_id: ObjectId, data: JSONBody[WebhookPatch], if_match: IfMatch = None
    ) -> Response[Webhook]:
        """Change url, events, project_id or enabled; honours If-Match. Disabling cancels what is
        still queued; ``enabled: true`` re-enables a webhook disabled by a 410."""
        webhook = await webhooks.update_webhook(
            request.user.id,
            webhook_id,
            struct_changes(data),
            allow_private=_allow_private(request),
            expected_version=expected_version(if_match),
        )
        return with_etag(webhook, webhook.version)

    @delete("/{webhook_id:int}")
    async def delete_webhook(self, request: UserRequest, webhook_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a webhook and its delivery log; honours If-Match."""
        await webhooks.delete_webhook(request.user.id, webhook_id, expected_version=expected_version(if_match))

    @get("/{webhook_id:int}/deliveries", return_dto=WebhookDeliveryReadDTO)
    async def list_webhook_deliveries(
        self, request: UserRequest, webhook_id: ObjectId, limit: Limit = 20, offset: Offset = 0
    ) -> Page[WebhookDelivery]:
        """The webhook's deliveries, newest first: status, attempts, the last answer's status
        code, error and time, and when the next attempt is due."""
        items, total = await webhooks.list_deliveries(request.user.id, webhook_id, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/{webhook_id:int}/deliveries/{delivery_id:int}", return_dto=WebhookDeliveryReadDTO)
    async def get_webhook_delivery(
        self, request: UserRequest, webhook_id: ObjectId, delivery_id: ObjectId
    ) -> WebhookDelivery:
        """One delivery."""
        return await webhooks.get_delivery(request.user.id, webhook_id, delivery_id)

    @post(
        "/{webhook_id:int}/deliveries/{delivery_id:int}/redeliver",
        return_dto=WebhookDeliveryReadDTO,
        responses=problem_responses(409),
    )
    async def redeliver_webhook_delivery(
        self,
        request: UserRequest,
        webhook_id: ObjectId,
        delivery_id: ObjectId,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[WebhookDelivery]:
        """Queue the same message again (same ``webhook-id`` and body) as a new delivery. A
        disabled webhook is a 409."""
        delivery, replayed = await webhooks.redeliver(
            request.user.id, webhook_id, delivery_id, idempotency=await idempotency(request, idempotency_key)
        )
        return _queued(request, self.path, webhook_id, delivery, replayed)

    @post("/{webhook_id:int}/ping", return_dto=WebhookDeliveryReadDTO, responses=problem_responses(409))
    async def ping_webhook(
        self, request: UserRequest, webhook_id: ObjectId, idempotency_key: IdempotencyKeyHeader = None
    ) -> Response[WebhookDelivery]:
        """Queue a ``webhook.ping`` delivery. A disabled webhook is a 409."""
        delivery, replayed = await webhooks.ping(
            request.user.id, webhook_id, idempotency=await idempotency(request, idempotency_key)
        )
        return _queued(request, self.path, webhook_id, delivery, replayed)


def _queued(
    request: UserRequest, path: str, webhook_id: int, delivery: WebhookDelivery, replayed: bool
) -> Response[Any]:
    mark_replayed(request, replayed)
    return Response(delivery, status_code=201, headers={"Location": f"{path}/{webhook_id}/deliveries/{delivery.id}"})
