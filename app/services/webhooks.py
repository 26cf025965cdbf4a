"""Webhooks: subscriptions, their signing secrets, the URL guard, and the delivery log.

A webhook belongs to one user and receives the events that user can read (README "Webhooks"):
with ``project`` set, only that project's events. Which events reach which webhook is decided by
the database, in the event's own transaction (migration "webhook deliveries for events"), so a
delivery is queued exactly when the change commits; app/webhooks_worker.py sends them.

Signing secrets are not stored. Each webhook keeps a random salt; its secret is
``HMAC-SHA256(K, salt)`` where ``K`` is derived from TASKAPI_SECRET_KEY, so a copy of the
database alone does not reveal any secret. Anyone with both the database and the server secret
can recompute them (the signature needs the raw secret, so the server must be able to); and a
changed TASKAPI_SECRET_KEY changes every secret, which ``secret_key_id`` detects.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from piccolo.querystring import QueryString

from app.errors import ConflictError, InvalidFieldError, NotFoundError
from app.services import access, sql
from app.services.common import delete_owned, from_row, get_owned, update_owned, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.query import Param, Statement, querystring, transaction
from app.settings import get_settings
from app.tables import DeliveryStatus, Webhook, WebhookDelivery

# What a webhook may subscribe to: the event types of SPEC "Changes, live updates and webhooks".
EVENT_RESOURCES: dict[str, tuple[str, ...]] = {
    "project": ("created", "updated", "deleted"),
    "task": ("created", "updated", "deleted"),
    "label": ("created", "updated", "deleted"),
    "comment": ("created", "updated", "deleted"),
    "member": ("added", "removed", "role_changed"),
}
EVENT_TYPES = frozenset(f"{resource}.{action}" for resource, actions in EVENT_RESOURCES.items() for action in actions)
MAX_PATTERNS = 50
PING = "webhook.ping"
SCHEMES = ("http", "https")
RESOLVE_TIMEOUT = 3.0
MAX_WEBHOOKS_PER_USER = 100

# --------------------------------------------------------------------------------------------
# Event patterns


def event_patterns(events: list[str]) -> list[str]:
    """The patterns as stored (duplicates dropped, order kept); 422 naming ``events`` otherwise.

    A pattern is ``*``, ``<resource>.*`` or one event type (the database matches them the same
    way: ``webhook_event_matches``).
    """
    if not events:
        raise InvalidFieldError("events", "give at least one event type or pattern, e.g. task.* or *")
    if len(events) > MAX_PATTERNS:
        raise InvalidFieldError("events", f"at most {MAX_PATTERNS} event types or patterns")
    unknown = [p for p in events if not (p == "*" or p in EVENT_TYPES or p.removesuffix(".*") in EVENT_RESOURCES)]
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise InvalidFieldError(
            "events",
            f"unknown event type or pattern: {', '.join(map(repr, unknown))}; use *, <resource>.* or one of {known}",
        )
    return list(dict.fromkeys(events))


def matches(patterns: list[str], event_type: str) -> bool:
    """Python twin of the database's ``webhook_event_matches`` (tests compare them)."""
    return event_type in patterns or "*" in patterns or f"{event_type.split('.', 1)[0]}.*" in patterns


# --------------------------------------------------------------------------------------------
# Secrets


def _root_key(server_secret: str) -> bytes:
    return hmac.new(server_secret.encode(), b"taskapi webhook signing secrets v1", hashlib.sha256).digest()


def secret_key_id(server_secret: str) -> str:
    """A fingerprint of the key secrets are derived from (not of the secret itself)."""
    return hmac.new(_root_key(server_secret), b"key id", hashlib.sha256).hexdigest()[:16]


def signing_secret(server_secret: str, salt: str) -> str:
    """A webhook's secret in Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    raw = hmac.new(_root_key(server_secret), bytes.fromhex(salt), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode()


# --------------------------------------------------------------------------------------------
# The URL guard (SSRF)


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not be sent to ``address`` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refused_address(embedded)
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    """Where a webhook URL points: its parts and the addresses its host resolved to (checked)."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


class UrlRefused(ValueError):
    """The URL may not be used; the message says why."""


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Parse ``url``, resolve its host and check every address (UrlRefused says why not).

    Every address must be public: a host with one private address among public ones could be
    pointed at it. Called when a webhook is saved and again before each send (DNS rebinding).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise UrlRefused("only http and https URLs")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            raise UrlRefused(f"the host {host} does not resolve") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise UrlRefused(f"the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            if (why := refused_address(address)) is not None:
                raise UrlRefused(f"{host} resolves to {address}, a {why} address; webhooks go to public addresses only")
    return Target(parts.scheme.lower(), host, port, tuple(str(a) for a in addresses))


async def _checked_url(url: str, *, allow_private: bool) -> str:
    try:
        await resolve_target(url, allow_private=allow_private)
    except UrlRefused as exc:
        raise InvalidFieldError("url", str(exc)) from None
    return url


# --------------------------------------------------------------------------------------------
# Webhooks

_IS_MEMBER = access.has_role(Param("project"))
INSERTED = (
    Webhook.owner,
    Webhook.project,
    Webhook.url,
    Webhook.events,
    Webhook.secret_salt,
    Webhook.secret_key_id,
)
# Written only for a project the owner is a member of (any role: a webhook shows only what its
# owner can read anyway, and the database checks that again for every event).
CREATE = Statement(
    sql.insert_where(
        Webhook,
        INSERTED,
        holds=[QueryString("{}::integer IS NULL OR ({})", Param("project"), querystring(_IS_MEMBER))],
    )
)
COUNT_MINE = Statement(Webhook.count().where(Webhook.owner == Param("user")))
LIST_MINE = Statement(
    sql.limited(
        querystring(Webhook.select(*Webhook._meta.columns).where(Webhook.owner == Param("user")).order_by(Webhook.id)),
        offset=True,
    )
)
IS_MEMBER = Statement(_IS_MEMBER)
# Nothing queued for a webhook that is disabled is sent (a re-enabled webhook starts afresh).
CANCEL_QUEUED = Statement(
    WebhookDelivery.update(
        {WebhookDelivery.status: DeliveryStatus.cancelled.value, WebhookDelivery.last_error: Param("reason")}
    ).where(
        (WebhookDelivery.webhook == Param("webhook"))
        & WebhookDelivery.status.is_in([DeliveryStatus.pending.value, DeliveryStatus.sending.value])
    )
)


def new_secret() -> tuple[str, str]:
    """(salt, key id) for a new secret."""
    return secrets.token_hex(32), secret_key_id(get_settings().secret_key)


def secret_of(webhook: Webhook) -> str:
    return signing_secret(get_settings().secret_key, webhook.secret_salt)


async def _require_member(user_id: int, project_id: int | None) -> None:
    if project_id is not None and not (await IS_MEMBER.fetch(project=project_id, user=user_id))[0]["exists"]:
        raise InvalidFieldError("project_id", f"project {project_id} does not exist or you are not a member")


async def create_webhook(
    user_id: int,
    *,
    url: str,
    events: list[str],
    project_id: int | None,
    allow_private: bool,
    idempotency: Idempotency | None = None,
) -> tuple[Webhook, str, bool]:
    """Create a webhook; returns (webhook, its signing secret, replayed).

    Raises:
        InvalidFieldError: a URL that is not http(s), does not resolve or resolves to a
            non-public address (unless ``allow_private``); unknown event types; a project the
            user is not a member of.
        ConflictError: the user has MAX_WEBHOOKS_PER_USER webhooks already.
    """
    patterns = event_patterns(events)
    await _checked_url(url, allow_private=allow_private)

    async def create() -> list[dict[str, Any]]:
        salt, key_id = new_secret()
        async with transaction():
            # Serialises one user's creates, so the cap holds under concurrency.
            await sql.LOCK.fetch(key=f"webhooks:{user_id}", space=0)
            if (await COUNT_MINE.fetch(user=user_id))[0]["count"] >= MAX_WEBHOOKS_PER_USER:
                raise ConflictError(f"You have {MAX_WEBHOOKS_PER_USER} webhooks, the most allowed; delete one first")
            rows = await CREATE.fetch(
                owner=user_id,
                project=project_id,
                url=url,
                events=patterns,
                secret_salt=salt,
                secret_key_id=key_id,
                user=user_id,
            )
        if not rows:
            await _require_member(user_id, project_id)
            raise ConflictError("The project changed while this request ran; retry")
        return [dict(rows[0])]

    # A replay answers with the same secret: it is derived from the salt in the stored answer.
    rows, replayed = await run_once(user_id, idempotency, create)
    webhook = from_row(Webhook, rows[0])
    if replayed:
        webhook.created_at = _datetime(webhook.created_at)
        webhook.updated_at = _datetime(webhook.updated_at)
    return webhook, secret_of(webhook), replayed


def _datetime(value: Any) -> Any:
    """A timestamp read back from an idempotency snapshot (JSON text) as a datetime."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


async def list_webhooks(user_id: int, *, limit: int, offset: int) -> tuple[list[Webhook], int]:
    """The user's webhooks, oldest first, and their total."""
    rows = await LIST_MINE.fetch(user=user_id, limit=limit, offset=offset)
    if len(rows) < limit and (rows or offset == 0):
        total = offset + len(rows)
    else:
        total = (await COUNT_MINE.fetch(user=user_id))[0]["count"]
    return [from_row(Webhook, dict(r)) for r in rows], total


async def get_webhook(user_id: int, webhook_id: int) -> Webhook:
    return await get_owned(Webhook, "Webhook", owner_id=user_id, obj_id=webhook_id)


async def update_webhook(
    user_id: int, webhook_id: int, changes: dict[str, Any], *, allow_private: bool, expected_version: int | None
) -> Webhook:
    """Change url, events, project_id or enabled. Disabling cancels what is queued; enabling
    clears ``disabled_reason`` (and sends only events from then on)."""
    values: dict[Any, Any] = {}
    if "url" in changes:
        values[Webhook.url] = await _checked_url(changes["url"], allow_private=allow_private)
    if "events" in changes:
        values[Webhook.events] = event_patterns(changes["events"])
    if "project_id" in changes:
        # Checked before the write: membership is checked again for every event anyway.
        await _require_member(user_id, changes["project_id"])
        values[Webhook.project] = changes["project_id"]
    if "enabled" in changes:
        values[Webhook.enabled] = changes["enabled"]
        values[Webhook.disabled_reason] = None if changes["enabled"] else "disabled by its owner"
    async with transaction():
        webhook = await update_owned(
            Webhook,
            "Webhook",
            owner_id=user_id,
            obj_id=webhook_id,
            values=values,
            expected_version=expected_version,
        )
        if "enabled" in changes:
            # Disabled: nothing queued is sent. Enabled again: only events from now on (what a
            # concurrent event queued while it was off is not sent either).
            await CANCEL_QUEUED.fetch(webhook=webhook_id, reason="the webhook was disabled by its owner")
    return webhook


async def delete_webhook(user_id: int, webhook_id: int, *, expected_version: int | None) -> None:
    """Delete a webhook and its delivery log."""
    await delete_owned(Webhook, "Webhook", owner_id=user_id, obj_id=webhook_id, expected_version=expected_version)


# --------------------------------------------------------------------------------------------
# Deliveries

_OF_WEBHOOK = WebhookDelivery.webhook == Param("webhook")
LIST_DELIVERIES = Statement(
    sql.limited(
        querystring(
            WebhookDelivery.select(*WebhookDelivery._meta.columns)
            .where(_OF_WEBHOOK)
            .order_by(WebhookDelivery.id, ascending=False)
        ),
        offset=True,
    )
)
COUNT_DELIVERIES = Statement(WebhookDelivery.count().where(_OF_WEBHOOK))
GET_DELIVERY = Statement(
    WebhookDelivery.select(*WebhookDelivery._meta.columns).where(
        _OF_WEBHOOK & (WebhookDelivery._meta.primary_key == Param("id"))
    )
)
# Queued only to the user's own enabled webhook.
QUEUE_PING = Statement(
    sql.insert_where(
        WebhookDelivery,
        (
            WebhookDelivery.webhook,
            WebhookDelivery.type,
            WebhookDelivery.message_id,
            WebhookDelivery.payload,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.created_at,
        ),
        holds=[
            querystring(
                Webhook.exists().where(
                    (Webhook._meta.primary_key == Param("webhook"))
                    & (Webhook.owner == Param("user"))
                    & (Webhook.enabled.eq(True))
                )
            )
        ],
    )
)


async def _enabled_webhook(user_id: int, webhook_id: int) -> Webhook:
    webhook = await get_webhook(user_id, webhook_id)
    if not webhook.enabled:
        reason = f" ({webhook.disabled_reason})" if webhook.disabled_reason else ""
        raise ConflictError(f"Webhook {webhook_id} is disabled{reason}; enable it with PATCH enabled: true first")
    return webhook


async def list_deliveries(
    user_id: int, webhook_id: int, *, limit: int, offset: int
) -> tuple[list[WebhookDelivery], int]:
    """A webhook's deliveries, newest first, and their total."""
    await get_webhook(user_id, webhook_id)
    rows = await LIST_DELIVERIES.fetch(webhook=webhook_id, limit=limit, offset=offset)
    if len(rows) < limit and (rows or offset == 0):
        total = offset + len(rows)
    else:
        total = (await COUNT_DELIVERIES.fetch(webhook=webhook_id))[0]["count"]
    return [_delivery(dict(r)) for r in rows], total


async def get_delivery(user_id: int, webhook_id: int, delivery_id: int) -> WebhookDelivery:
    await get_webhook(user_id, webhook_id)
    row = await GET_DELIVERY.fetch_one(webhook=webhook_id, id=delivery_id)
    if row is None:
        raise NotFoundError("Delivery", delivery_id)
    return _delivery(dict(row))


async def ping(
    user_id: int, webhook_id: int, *, idempotency: Idempotency | None = None
) -> tuple[WebhookDelivery, bool]:
    """Queue a ``webhook.ping`` delivery (event-shaped, ``object`` names the webhook).
    Returns (delivery, replayed)."""
    webhook = await get_webhook(user_id, webhook_id)

    async def queue() -> list[dict[str, Any]]:
        now = utcnow()
        payload = {
            "id": None,
            "type": PING,
            "occurred_at": now.isoformat().replace("+00:00", "Z"),
            "actor_id": user_id,
            "project_id": webhook.project,
            "object": {"webhook_id": webhook_id, "url": webhook.url, "events": webhook.events},
            "changes": None,
        }
        rows = await QUEUE_PING.fetch(
            webhook=webhook_id,
            user=user_id,
            type=PING,
            message_id=f"msg_ping_{uuid.uuid4().hex}",
            payload=json.dumps(payload),
            next_attempt_at=now,
            created_at=now,
        )
        if not rows:
            await _enabled_webhook(user_id, webhook_id)
            raise ConflictError(f"Webhook {webhook_id} changed while this request ran; retry")
        return [_delivery_row(rows[0])]

    rows, replayed = await run_once(user_id, idempotency, queue)
    return _delivery(rows[0]), replayed


def _delivery_row(row: Any) -> dict[str, Any]:
    """A delivery row as answered (and as an idempotent replay stores it): no payload."""
    return {k: v for k, v in dict(row).items() if k != "payload"}


def _delivery(row: dict[str, Any]) -> WebhookDelivery:
    """A delivery from a row or from a replayed answer (whose timestamps are text); ``history``
    as a list (asyncpg reads jsonb as text)."""
    times = ("next_attempt_at", "last_attempt_at", "delivered_at", "created_at")
    values = {k: _datetime(v) if k in times else v for k, v in row.items()}
    if isinstance(values.get("history"), str):
        values["history"] = json.loads(values["history"])
    return from_row(WebhookDelivery, values)


async def redeliver(
    user_id: int, webhook_id: int, delivery_id: int, *, idempotency: Idempotency | None = None
) -> tuple[WebhookDelivery, bool]:
    """Queue the same message again (same ``webhook-id``, body and type) as a new delivery.
    Returns (delivery, replayed).

    A project event is redelivered only while the user is still a member of the project.
    """

    async def queue() -> list[dict[str, Any]]:
        rows = await sql.REDELIVER.fetch(webhook=webhook_id, id=delivery_id, user=user_id)
        if not rows:
            await _enabled_webhook(user_id, webhook_id)
            raise NotFoundError("Delivery", delivery_id)
        return [_delivery_row(rows[0])]

    rows, replayed = await run_once(user_id, idempotency, queue)
    return _delivery(rows[0]), replayed
