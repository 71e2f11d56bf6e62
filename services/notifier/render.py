"""Block Kit messages for alerts: one layout per `AlertKind` (what happened, the key and its tags,
the figures, when, what to do next), the thread reply that resolves an alert, the digest that
replaces a burst, and the plain-text fallback Slack shows in notifications and the console prints.
Pure functions of the alert; nothing here talks to Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.events.alert import AlertEvent, AlertKind, AlertState, Severity

Block = dict[str, Any]

HEADER_LIMIT = 150  # Block Kit: header plain_text
SECTION_LIMIT = 3000  # section text
FIELD_LIMIT = 2000  # one section field
FIELDS_PER_SECTION = 10
DIGEST_LINES = 40  # a digest lists this many alerts, then "and N more" (50 blocks max per message)
METADATA_EVENT_TYPE = "keywarden_alert"
DIGEST_EVENT_TYPE = "keywarden_alert_digest"


@dataclass(frozen=True)
class SlackMessage:
    """What is sent: fallback text, blocks, and (for a resolution) the thread it replies in."""

    text: str
    blocks: list[Block]
    thread_ts: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KindLayout:
    emoji: str
    label: str
    figures: Callable[[AlertEvent], list[tuple[str, str]]]
    next_step: str


# --- formatting helpers ---------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def usd(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value.normalize():f}"[:10]


def number(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def percent(part: Decimal | None, whole: Decimal | None) -> str:
    if part is None or not whole:
        return "n/a"
    return f"{part / whole * 100:.0f}%"


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def key_name(alert: AlertEvent) -> str:
    return alert.key_scope or alert.wrapped_key_id or "(no key)"


def _metric_value(alert: AlertEvent, value: Decimal | None) -> str:
    return usd(value) if alert.metric in ("cost_usd", "spend_usd") else number(value)


# --- figures per kind -----------------------------------------------------------------------


def _as_percent(threshold: Decimal) -> Decimal:
    """Thresholds arrive as fractions (0.8) or percents (80)."""
    return threshold * 100 if threshold <= 1 else threshold


def _budget(alert: AlertEvent) -> list[tuple[str, str]]:
    spend = alert.observed
    figures = [
        ("Spend", f"{usd(spend)} of {usd(alert.limit_usd)} cap ({percent(spend, alert.limit_usd)})")
    ]
    if alert.threshold is not None:
        figures.append(
            (
                "Threshold",
                f"{number(_as_percent(alert.threshold))}% of cap",
            )
        )
    return figures


def _spike(alert: AlertEvent) -> list[tuple[str, str]]:
    ratio = alert.ratio
    if ratio is None and alert.observed is not None and alert.baseline:
        ratio = alert.observed / alert.baseline
    unit = "" if alert.metric in ("cost_usd", "spend_usd") else f" {alert.metric or 'requests'}"
    details = alert.details
    figures = [
        ("Observed", f"{_metric_value(alert, alert.observed)}{unit}"),
        ("Baseline", f"{_metric_value(alert, alert.baseline)}{unit}"),
        ("Ratio", f"{ratio:.1f}× baseline" if ratio is not None else "n/a"),
    ]
    if details.get("baseline_mode") == "seasonal":
        kind = {"weekday": "weekdays", "weekend": "weekend days"}.get(
            details.get("day_kind", ""), "days")
        history = [v for v in details.get("history", "").split(",") if v]
        growth = f" x{details['growth']} for its growth" if details.get("growth") else ""
        figures.append(("Compared with", escape(
            f"{details.get('window', '')} UTC on the last {len(history)} {kind} "
            f"({details.get('centre', 'median')}{growth})")))
        if history:
            values = ", ".join(_metric_value(alert, Decimal(v)) for v in history)
            figures.append(("History (newest first)", escape(values)))
        if details.get("p_value"):
            figures.append(("Chance under usual noise", f"p = {escape(details['p_value'])}"))
    elif details.get("baseline_mode") == "flat":
        figures.append(("Compared with", "the 7-day average (flat baseline)"))
    return figures


def _first_model(alert: AlertEvent) -> list[tuple[str, str]]:
    figures = [("Model", f"`{alert.model or 'unknown'}`")]
    if alert.observed is not None:
        figures.append(("Requests so far", _metric_value(alert, alert.observed)))
    return figures


def _days(label: str) -> Callable[[AlertEvent], list[tuple[str, str]]]:
    def figures(alert: AlertEvent) -> list[tuple[str, str]]:
        result = [(label, f"{number(alert.observed)} days")]
        if alert.threshold is not None:
            result.append(("Limit", f"{number(alert.threshold)} days"))
        return result

    return figures


def _unknown_price(alert: AlertEvent) -> list[tuple[str, str]]:
    figures = [("Model", f"`{alert.model or 'unknown'}`")]
    if alert.observed is not None:
        figures.append(("Unpriced requests", number(alert.observed)))
    return figures


def _expiring(alert: AlertEvent) -> list[tuple[str, str]]:
    figures = [("Days left", number(alert.observed))]
    if "expires_at" in alert.details:
        figures.append(("Expires", alert.details["expires_at"]))
    return figures


def _leaked(alert: AlertEvent) -> list[tuple[str, str]]:
    where = alert.details.get("source") or alert.details.get("location") or "unknown"
    return [("Found in", escape(where))]


LAYOUTS: dict[AlertKind, KindLayout] = {
    AlertKind.BUDGET_THRESHOLD: KindLayout(
        ":moneybag:",
        "Budget threshold",
        _budget,
        "Check what is driving spend (`keywarden report spend --key …`); raise the cap or "
        "throttle the caller before the key is refused at 100%.",
    ),
    AlertKind.SPIKE: KindLayout(
        ":chart_with_upwards_trend:",
        "Usage spike",
        _spike,
        "Confirm the traffic is expected (a deploy, a batch job); if not, lower the key's RPM "
        "or revoke it and look at the callers' source IPs.",
    ),
    AlertKind.FIRST_MODEL_USE: KindLayout(
        ":new:",
        "First use of a model",
        _first_model,
        "Make sure the model is approved for this service and priced as expected; restrict "
        "the key's model allowlist if it should not be used.",
    ),
    AlertKind.ORPHANED_KEY: KindLayout(
        ":ghost:",
        "Unused key",
        _days("No traffic for"),
        "If nobody owns this key any more, revoke it (`keywarden keys revoke …`); otherwise "
        "tag an owner.",
    ),
    AlertKind.ROTATION_OVERDUE: KindLayout(
        ":arrows_counterclockwise:",
        "Provider key rotation overdue",
        _days("Key age"),
        "Rotate the provider key (`keywarden provider-keys rotate …`); wrapped keys keep working.",
    ),
    AlertKind.UNKNOWN_MODEL_PRICE: KindLayout(
        ":grey_question:",
        "Model without a price",
        _unknown_price,
        "Add the model to the price overrides (schemas/pricing/overrides.json) or upgrade "
        "genai-prices, then reprice; until then its spend is not counted against budgets.",
    ),
    AlertKind.KEY_EXPIRING: KindLayout(
        ":hourglass_flowing_sand:",
        "Key expiring soon",
        _expiring,
        "Issue a replacement key and roll it out before the expiry, or extend the expiry.",
    ),
    AlertKind.LEAKED_KEY: KindLayout(
        ":rotating_light:",
        "Key possibly leaked",
        _leaked,
        "Revoke the key now (`keywarden keys revoke …`), issue a new one, and check recent "
        "requests for unfamiliar source IPs.",
    ),
}

_SEVERITY = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "CRITICAL"}


def _tag_fields(alert: AlertEvent) -> list[tuple[str, str]]:
    tags = alert.tags
    fields = [
        ("Key", f"`{escape(key_name(alert))}`"),
        ("Team", escape(tags.team) or "—"),
        ("Service", escape(tags.service) or "—"),
        ("Environment", escape(tags.environment) or "—"),
    ]
    if tags.cost_center:
        fields.append(("Cost center", escape(tags.cost_center)))
    if alert.model and alert.kind not in (AlertKind.FIRST_MODEL_USE, AlertKind.UNKNOWN_MODEL_PRICE):
        fields.append(("Model", f"`{escape(alert.model)}`"))
    return fields


def _fields_section(pairs: Sequence[tuple[str, str]]) -> list[Block]:
    blocks = []
    for start in range(0, len(pairs), FIELDS_PER_SECTION):
        chunk = pairs[start : start + FIELDS_PER_SECTION]
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", FIELD_LIMIT)} for k, v in chunk
                ],
            }
        )
    return blocks


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}}


def _header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _clip(text, HEADER_LIMIT), "emoji": True},
    }


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}]}


def _tag_line(alert: AlertEvent) -> str:
    tags = alert.tags
    parts = [
        f"{name} {value}"
        for name, value in (
            ("team", tags.team),
            ("service", tags.service),
            ("env", tags.environment),
        )
        if value
    ]
    return ", ".join(parts)


def _figure_line(alert: AlertEvent) -> str:
    return "; ".join(f"{k.lower()} {v.strip('`')}" for k, v in LAYOUTS[alert.kind].figures(alert))


def metadata(alert: AlertEvent) -> dict[str, Any]:
    """Slack message metadata naming the alert, so a message can be traced back to its id."""
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "alert_id": str(alert.alert_id),
            "state": alert.state.value,
            "kind": alert.kind.value,
        },
    }


def fallback_text(alert: AlertEvent, mention: str = "") -> str:
    """The one-line notification text: kind, key, tags, figures, next step."""
    layout = LAYOUTS[alert.kind]
    prefix = "Resolved: " if alert.state is AlertState.RESOLVED else ""
    tags = _tag_line(alert)
    line = (
        f"{mention + ' ' if mention else ''}{prefix}[{_SEVERITY[alert.severity]}] {layout.label}: "
        f"key {key_name(alert)}{f' ({tags})' if tags else ''} — {alert.title}. "
        f"{_figure_line(alert)}."
    )
    if alert.state is AlertState.OPEN:
        line += f" Next: {layout.next_step}"
    return _clip(line, 3900)


def render_alert(alert: AlertEvent, mention: str = "") -> SlackMessage:
    """The Block Kit message for an open alert."""
    layout = LAYOUTS[alert.kind]
    what = f"*{escape(alert.title)}*"
    if alert.summary:
        what += f"\n{escape(alert.summary)}"
    if mention:
        what = f"{mention} {what}"
    blocks = [
        _header(f"{layout.label}: {key_name(alert)}"),
        _section(what),
        *_fields_section(_tag_fields(alert)),
        *_fields_section(layout.figures(alert)),
        _section(f"*What to do next*\n{layout.next_step}"),
        _context(
            f"{layout.emoji} {_SEVERITY[alert.severity]} · detected {when(alert.detected_at)}"
            + (f" · period {escape(alert.period)}" if alert.period else "")
            + f" · alert `{alert.alert_id}`"
        ),
    ]
    return SlackMessage(text=fallback_text(alert, mention), blocks=blocks, metadata=metadata(alert))


def render_resolution(alert: AlertEvent, thread_ts: str | None) -> SlackMessage:
    """The reply posted in the open alert's thread when the condition clears."""
    layout = LAYOUTS[alert.kind]
    what = f":white_check_mark: *Resolved* — {escape(alert.title)}"
    if alert.summary:
        what += f"\n{escape(alert.summary)}"
    blocks = [
        _section(what),
        *_fields_section([("Key", f"`{escape(key_name(alert))}`"), *layout.figures(alert)]),
        _context(f"cleared {when(alert.detected_at)} · alert `{alert.alert_id}`"),
    ]
    return SlackMessage(
        text=fallback_text(alert), blocks=blocks, thread_ts=thread_ts, metadata=metadata(alert)
    )


def render_resolved_parent(opened: SlackMessage, resolved: AlertEvent) -> SlackMessage:
    """The original message, edited (chat.update) so the channel shows it is resolved."""
    blocks = [dict(block) for block in opened.blocks]
    if blocks and blocks[0].get("type") == "header":
        title = blocks[0]["text"]["text"]
        blocks[0] = _header(f"✅ Resolved — {title}")
    blocks.append(_context(f":white_check_mark: resolved {when(resolved.detected_at)}"))
    return SlackMessage(text=f"Resolved: {opened.text}", blocks=blocks)


def render_digest(
    channel: str, alerts: Sequence[AlertEvent], window_seconds: float
) -> SlackMessage:
    """One message standing in for a burst of alerts to one channel."""
    lines = []
    for alert in alerts[:DIGEST_LINES]:
        layout = LAYOUTS[alert.kind]
        tags = _tag_line(alert)
        lines.append(
            f"{layout.emoji} *{layout.label}* · `{escape(key_name(alert))}`"
            f"{f' ({escape(tags)})' if tags else ''} — {escape(_figure_line(alert))}"
        )
    more = len(alerts) - DIGEST_LINES
    blocks: list[Block] = [
        _header(f"{len(alerts)} alerts in {window_seconds:g}s for {channel}"),
        _section("A burst of alerts was rolled into one message. Newest last."),
    ]
    chunk: list[str] = []
    for line in lines:  # pack lines into sections under the section limit
        if sum(len(x) + 1 for x in chunk) + len(line) > SECTION_LIMIT - 10:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    if more > 0:
        blocks.append(_context(f"… and {more} more (see the `alerts` table in ClickHouse)"))
    kinds = sorted({LAYOUTS[a.kind].label for a in alerts})
    text = f"{len(alerts)} keywarden alerts for {channel}: " + ", ".join(kinds)
    keys = sorted({key_name(a) for a in alerts})
    text += " — keys " + ", ".join(keys[:20]) + (" …" if len(keys) > 20 else "")
    digest_metadata = {
        "event_type": DIGEST_EVENT_TYPE,
        "event_payload": {"alert_ids": ",".join(str(a.alert_id) for a in alerts), "state": "open"},
    }
    return SlackMessage(text=_clip(text, 3900), blocks=blocks, metadata=digest_metadata)


def render_console(message: SlackMessage, channel: str) -> str:
    """The message as readable plain lines, for the console mode (no Slack configured)."""

    def plain(text: str) -> str:
        text = text.replace("*", "").replace("`", "")
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    lines = [f"── {channel}" + (f" (thread {message.thread_ts})" if message.thread_ts else "")]
    for block in message.blocks:
        if block["type"] == "header":
            lines.append(f"   {plain(block['text']['text'])}")
        elif block["type"] == "section":
            if "text" in block:
                lines.extend(f"   {line}" for line in plain(block["text"]["text"]).splitlines())
            for item in block.get("fields", []):
                name, _, value = plain(item["text"]).partition("\n")
                lines.append(f"   {name}: {value}")
        elif block["type"] == "context":
            lines.append("   " + " ".join(plain(e.get("text", "")) for e in block["elements"]))
    return "\n".join(lines)


__all__ = [
    "LAYOUTS",
    "SlackMessage",
    "fallback_text",
    "render_alert",
    "render_console",
    "render_digest",
    "render_resolution",
    "render_resolved_parent",
]
