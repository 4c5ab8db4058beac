"""A fake Telegram Bot API server for end-to-end tests.

The server speaks the HTTP protocol of ``api.telegram.org`` closely enough that an unmodified aiogram bot
(configured with ``TelegramAPIServer.from_base(fake.base_url)``) cannot tell the difference: the same URL layout,
the same request encodings (JSON, urlencoded and multipart), the same ``{"ok": ..., "result": ...}`` envelopes,
status codes and error descriptions.

Tests drive it from the other side: they push user updates (messages, button presses, files), inspect what the
bot sent, edited, deleted or streamed as drafts, and inject faults (errors, blocked users, flood limits).

Usage inside a pytest-asyncio test::

    async with FakeTelegram(token="123:ABC") as tg:
        start_bot_process(api_base=tg.base_url)
        tg.user_message(42, "/start")
        reply = await tg.wait_for_message(42)
        assert "Welcome" in reply.text

Standalone (for benchmarks), with a small JSON control API under ``/_fake/``::

    python -m tests.fakes.telegram_server --port 8081 --token 123:ABC
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.fakes.telegram_html import TelegramHTMLError, check_message, parse_html, utf16_len

JsonDict = dict[str, Any]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_ANSWER_LIMIT = 200
DESCRIPTION_LIMIT = 512
SHORT_DESCRIPTION_LIMIT = 120
# Bots may download files of at most 20 MB through getFile.
DOWNLOAD_LIMIT = 20 * 1024 * 1024

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
# What getFile answers, now and then, for a file Telegram serves again later.
FILE_UNAVAILABLE = "wrong file_id or the file is temporarily unavailable"
BLOCKED = "Forbidden: bot was blocked by the user"

# Where Telegram marks a command in a text (TDLib's match_bot_commands): a "/" after no word character, "/", "<"
# or ">"; 1-64 ASCII letters, digits or underscores; perhaps "@" and a username; then no word character, "/", "<"
# or ">". "/Start", "/model@pomogator_bot" and the "/etc" of "/etc — ..." are commands; "/etc/hosts" and "/r/python"
# hold none.
BOT_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32}(?![\w/<>])|(?![\w/<>@]))")

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
# Telegram leaves these out unless they are requested explicitly in allowed_updates.
OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Parameters that Telegram types as String: a multipart value like "123" must stay a string for them.
STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "description",
        "short_description",
        "name",
        "url",
        "secret_token",
        "language_code",
        "action",
        "file_id",
        "inline_message_id",
        "business_connection_id",
        "ip_address",
        "message_effect_id",
        "emoji",
        "title",
    }
)
BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class ApiError(Exception):
    """An error answer of the Bot API: an HTTP status, a description and optional parameters."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JsonDict:
        body: JsonDict = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bot_command_entities(text: str) -> list[JsonDict] | None:
    """The ``bot_command`` entities Telegram gives a user's ``text``."""
    entities = [
        {"type": "bot_command", "offset": utf16_len(text[: match.start()]), "length": utf16_len(match.group())}
        for match in BOT_COMMAND.finditer(text)
    ]
    return entities or None


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def flood(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


@dataclass
class Call:
    """One Bot API request as the server received it (params decoded to Python values)."""

    method: str
    params: JsonDict
    time: float
    """``time.monotonic()`` when the request arrived."""
    files: dict[str, bytes] = field(default_factory=dict)
    content_type: str = ""
    """The request body's type: ``application/json``, a form's, or ``application/octet-stream`` if none was given."""
    ok: bool | None = None
    error_code: int | None = None
    description: str | None = None


@dataclass
class SentMessage:
    """A message in a fake chat. Bot messages keep their current (edited) state and their edit history."""

    chat_id: int
    message_id: int
    from_bot: bool
    date: int
    text: str | None = None
    """Visible plain text (entities removed) of a text message, or the caption of a media message."""
    html: str | None = None
    """The raw text/caption exactly as the bot sent it (HTML markup when parse_mode was HTML)."""
    parse_mode: str | None = None
    entities: list[JsonDict] | None = None
    reply_markup: JsonDict | None = None
    kind: str = "text"
    """``text``, ``document``, ``photo``, ``sticker``, ``voice`` or ``location``."""
    deleted: bool = False
    edit_count: int = 0
    history: list[str] = field(default_factory=list)
    """Previous raw texts of the message, oldest first (filled by edits)."""
    reply_to_message_id: int | None = None
    media: JsonDict = field(default_factory=dict)
    """Extra message fields (document, photo, sticker, ...) exactly as they appear in the update."""
    user_id: int | None = None
    media_group_id: str | None = None

    @property
    def buttons(self) -> list[JsonDict]:
        """Inline keyboard buttons in reading order."""
        if not self.reply_markup:
            return []
        rows = self.reply_markup.get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def button_texts(self) -> list[str]:
        return [str(button.get("text", "")) for button in self.buttons]

    @property
    def callback_data(self) -> list[str]:
        return [str(b["callback_data"]) for b in self.buttons if "callback_data" in b]

    def button(self, text_part: str) -> JsonDict:
        """The first inline button whose text contains ``text_part``."""
        for button in self.buttons:
            if text_part in str(button.get("text", "")):
                return button
        raise LookupError(f"no button containing {text_part!r} in {self.button_texts}")


@dataclass
class DraftFrame:
    draft_id: int
    text: str
    """Visible plain text; empty for the 'Thinking…' placeholder."""
    html: str | None
    parse_mode: str | None
    time: float


@dataclass
class ChatDrafts:
    """Drafts streamed to one chat."""

    frames: list[DraftFrame] = field(default_factory=list)
    active: bool = False
    """Whether the latest draft is still shown: sending a message to the chat replaces it."""

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def latest(self) -> DraftFrame | None:
        return self.frames[-1] if self.frames else None

    @property
    def latest_text(self) -> str | None:
        return self.frames[-1].text if self.frames else None

    @property
    def draft_ids(self) -> list[int]:
        return list(dict.fromkeys(frame.draft_id for frame in self.frames))


@dataclass
class Chat:
    id: int
    type: str
    title: str | None = None
    first_name: str | None = None
    username: str | None = None
    messages: dict[int, SentMessage] = field(default_factory=dict)
    actions: list[tuple[str, float]] = field(default_factory=list)
    drafts: ChatDrafts = field(default_factory=ChatDrafts)
    blocked: bool = False

    def to_dict(self) -> JsonDict:
        data: JsonDict = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = self.first_name or "Test"
            if self.username:
                data["username"] = self.username
        else:
            data["title"] = self.title or "Test group"
        return data


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_size: int
    # Set by ``withhold_file``: getFile refuses the file with this reason.
    refused: str | None = None


@dataclass
class Fault:
    method: str
    error: ApiError
    times: int
    chat_id: int | None


@dataclass
class RateLimits:
    """Token buckets modelled on Telegram's published guidance.

    About one message per second in a chat (short bursts are tolerated), 20 per minute in a group and about
    30 per second across all chats. Drafts are not covered by the published numbers; they get their own
    per-chat bucket with the same one-per-second rate.
    """

    per_chat_rate: float = 1.0
    per_chat_burst: float = 3.0
    group_rate: float = 20.0 / 60.0
    group_burst: float = 20.0
    global_rate: float = 30.0
    global_burst: float = 30.0
    draft_rate: float = 1.0
    draft_burst: float = 3.0
    limit_drafts: bool = True


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, now: float) -> float:
        self._refill(now)
        if self.tokens >= 1.0 - 1e-9:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


Handler = Callable[[JsonDict, dict[str, bytes]], Awaitable[Any]]


def _decode_value(key: str, raw: str) -> Any:
    if key in STRING_PARAMS:
        return raw
    if key == "chat_id":
        try:
            return int(raw)
        except ValueError:
            return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _as_int(params: JsonDict, key: str, required: bool = True) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise bad_request(f"{key} is empty" if key != "chat_id" else "chat_id is empty")
        return None
    if isinstance(value, bool):
        raise bad_request(f"invalid {key} specified")
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError as exc:
        if key == "chat_id":
            raise bad_request("chat not found") from exc
        raise bad_request(f"invalid {key} specified") from exc


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in {"true", "1"}
    return bool(value)


def _as_json(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"can't parse {name} JSON object") from exc
    return value


def _valid_button_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"}:
        host = parts.hostname or ""
        return bool(host) and " " not in url
    return parts.scheme == "tg" and bool(parts.netloc or parts.path)


def validate_reply_markup(markup: Any) -> JsonDict | None:
    """Check a reply_markup the way Telegram does; returns the decoded markup."""
    if markup is None or markup == "":
        return None
    markup = _as_json(markup, "reply keyboard")
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        for row in rows:
            for button in row:
                _validate_inline_button(button)
        return markup
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
        return markup
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return markup
    raise bad_request('can\'t find field "inline_keyboard"')


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
    actions = [name for name in BUTTON_ACTIONS if name in button]
    if not actions:
        raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not _valid_button_url(url):
            raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


def split_like_client(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split a long text the way Telegram clients do before sending: chunks of at most ``limit`` UTF-16 units,
    preferring to cut after a newline or a space."""
    chunks: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = 0
        units = 0
        for index, char in enumerate(rest):
            units += 2 if ord(char) > 0xFFFF else 1
            if units > limit:
                break
            cut = index + 1
        window = rest[:cut]
        soft = max(window.rfind("\n"), window.rfind(" "))
        if soft > cut // 2:
            cut = soft + 1
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        chunks.append(rest)
    return chunks


class FakeTelegram:
    """An in-process fake of the Telegram Bot API (see the module docstring)."""

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_limits: bool = False,
        limits: RateLimits | None = None,
        bot_username: str = "pomogator_test_bot",
        bot_first_name: str = "Pomogator",
        webhook_auto_deliver: bool = True,
        sock: socket.socket | None = None,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        # A socket bound beforehand (and not listening): connections to its port are refused until ``start``.
        self._sock = sock
        if sock is not None:
            self.host, self.port = sock.getsockname()[:2]
        self.enforce_limits = enforce_limits
        self.limits = limits or RateLimits()
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.webhook_auto_deliver = webhook_auto_deliver

        self.calls: list[Call] = []
        self.flood_errors = 0
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.callback_answers: dict[str, JsonDict] = {}
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.webhook: JsonDict | None = None
        self.webhook_errors: list[str] = []
        self.allowed_updates: list[str] | None = None

        self._updates: list[JsonDict] = []
        self._delivered_upto = 0
        self._update_ids = itertools.count(700_000_001)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._open_queries: dict[str, tuple[int, int]] = {}
        self._faults: list[Fault] = []
        self._held: dict[str, asyncio.Event] = {}
        self._buckets: dict[tuple[str, int], _Bucket] = {}
        self._poll_generation = 0
        self._active_requests = 0
        self._last_activity = time.monotonic()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "setmydescription": self._set_my_description,
            "getmydescription": self._get_my_description,
            "setmyshortdescription": self._set_my_short_description,
            "getmyshortdescription": self._get_my_short_description,
            "setmyname": self._set_my_name,
            "getmyname": self._get_my_name,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "sendmessagedraft": self._send_message_draft,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "senddocument": self._send_document,
            "sendphoto": self._send_photo,
            "getchat": self._get_chat,
            "setchatmenubutton": self._set_chat_menu_button,
            "close": self._close,
            "logout": self._close,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("POST", "/_fake/user_message", self._control_user_message)
        app.router.add_route("GET", "/_fake/sent", self._control_sent)
        app.router.add_route("GET", "/_fake/stats", self._control_stats)
        return app

    async def start(self) -> Self:
        self._changed = asyncio.Event()
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(self._runner, self._sock)
        else:
            site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ HTTP plumbing

    def _notify(self, activity: bool = True) -> None:
        if activity:
            self._last_activity = time.monotonic()
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    async def _read_params(self, request: web.Request) -> tuple[JsonDict, dict[str, bytes]]:
        params: JsonDict = {key: _decode_value(key, value) for key, value in request.query.items()}
        files: dict[str, bytes] = {}
        if request.method != "POST" or not request.can_read_body:
            return params, files
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise bad_request("can't parse JSON object") from exc
            if isinstance(body, dict):
                params.update(body)
            return params, files
        if content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                    params.setdefault(key, f"attach://{key}")
                else:
                    params[key] = _decode_value(key, str(value))
        return params, files

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        if token != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        long_poll = method.lower() == "getupdates"
        if not long_poll:
            self._active_requests += 1
        call = Call(method=method, params={}, time=time.monotonic(), content_type=request.content_type)
        try:
            try:
                call.params, call.files = await self._read_params(request)
                self.calls.append(call)
                handler = self._handlers.get(method.lower())
                if handler is None:
                    raise ApiError(404, "Not Found")
                self._inject_fault(method, call.params)
                gate = self._held.get(method.lower())
                if gate is not None:
                    await gate.wait()
                result = await handler(call.params, call.files)
            except ApiError as error:
                if error.error_code == 429:
                    self.flood_errors += 1
                call.ok, call.error_code, call.description = False, error.error_code, error.description
                return web.json_response(error.payload(), status=error.error_code)
            call.ok = True
            return web.json_response({"ok": True, "result": result})
        finally:
            if not long_poll:
                self._active_requests -= 1
            # Long polls come and go while the bot is idle, so they do not count as activity.
            self._notify(activity=not long_poll)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        stored = self.files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _inject_fault(self, method: str, params: JsonDict) -> None:
        for fault in self._faults:
            if fault.method.lower() != method.lower():
                continue
            if fault.chat_id is not None:
                try:
                    chat_id = int(params.get("chat_id"))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if chat_id != fault.chat_id:
                    continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            raise fault.error

    # ------------------------------------------------------------------ shared checks

    def _chat(self, params: JsonDict) -> Chat:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        if isinstance(chat_id, str) and not chat_id.lstrip("-").isdigit():
            raise bad_request("chat not found")
        chat = self.chats.get(int(chat_id))
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _check_can_send(self, chat: Chat) -> None:
        if chat.blocked:
            raise ApiError(403, BLOCKED)

    def _bucket(self, kind: str, key: int, rate: float, burst: float) -> _Bucket:
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = self._buckets[(kind, key)] = _Bucket(rate, burst)
        return bucket

    def _limit_buckets(self, chat: Chat, draft: bool) -> list[_Bucket]:
        limits = self.limits
        if draft:
            if not limits.limit_drafts:
                return []
            buckets = [self._bucket("draft", chat.id, limits.draft_rate, limits.draft_burst)]
        elif chat.type == "private":
            buckets = [self._bucket("chat", chat.id, limits.per_chat_rate, limits.per_chat_burst)]
        else:
            buckets = [
                self._bucket("chat", chat.id, limits.per_chat_rate, limits.per_chat_burst),
                self._bucket("group", chat.id, limits.group_rate, limits.group_burst),
            ]
        buckets.append(self._bucket("global", 0, limits.global_rate, limits.global_burst))
        return buckets

    def _check_limits(self, chat: Chat, draft: bool = False) -> list[_Bucket]:
        """Raise 429 if a send now would exceed the limits; the caller takes tokens once the send succeeds."""
        if not self.enforce_limits:
            return []
        now = time.monotonic()
        buckets = self._limit_buckets(chat, draft)
        wait = max((bucket.wait_time(now) for bucket in buckets), default=0.0)
        if wait > 0:
            raise flood(max(1, math.ceil(wait)))
        return buckets

    @staticmethod
    def _take(buckets: Iterable[_Bucket]) -> None:
        now = time.monotonic()
        for bucket in buckets:
            bucket.take(now)

    @staticmethod
    def _parse_text(
        params: JsonDict, key: str, limit: int, allow_empty: bool = False
    ) -> tuple[str, str | None, list[JsonDict] | None]:
        """Validate a text (or caption) with its parse_mode; returns (plain text, raw text, entities)."""
        raw = params.get(key)
        if raw is None or raw == "":
            if allow_empty:
                return "", None, None
            raise bad_request("message text is empty")
        raw = str(raw)
        parse_mode = params.get("parse_mode") or None
        if parse_mode is None and not raw.strip() and not allow_empty:
            raise bad_request("message text is empty")
        mode = str(parse_mode).lower() if parse_mode is not None else None
        if mode is not None and mode not in {"html", "markdown", "markdownv2"}:
            raise bad_request(f'unsupported parse_mode "{parse_mode}"')
        entities: list[JsonDict] | None = None
        if mode is None and params.get("entities"):
            entities = _as_json(params["entities"], "entities")
        try:
            # Markdown modes are not modelled: only their length and emptiness are checked.
            plain = check_message(raw, "HTML" if mode == "html" else None, limit)
            if mode == "html":
                entities = [dict(entity) for entity in parse_html(raw)[1]] or None
        except TelegramHTMLError as error:
            if allow_empty and str(error) == "text must be non-empty":
                return "", raw, None
            raise bad_request(str(error)) from error
        return plain, raw, entities

    def _reply_to(self, chat: Chat, params: JsonDict) -> int | None:
        reply_to = params.get("reply_to_message_id")
        allow_missing = _as_bool(params.get("allow_sending_without_reply"))
        parameters = params.get("reply_parameters")
        if parameters:
            parameters = _as_json(parameters, "reply parameters")
            reply_to = parameters.get("message_id")
            allow_missing = _as_bool(parameters.get("allow_sending_without_reply"))
        if reply_to is None:
            return None
        target = chat.messages.get(int(reply_to))
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise bad_request("message to be replied not found")
        return int(reply_to)

    def _store_bot_message(self, chat: Chat, **fields: Any) -> SentMessage:
        message = SentMessage(
            chat_id=chat.id,
            message_id=self._next_message_id(chat),
            from_bot=True,
            date=int(time.time()),
            user_id=self.bot_id,
            **fields,
        )
        chat.messages[message.message_id] = message
        chat.drafts.active = False
        return message

    @staticmethod
    def _next_message_id(chat: Chat) -> int:
        return max(chat.messages, default=0) + 1

    # ------------------------------------------------------------------ serialisation

    def bot_user(self) -> JsonDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _user(self, user_id: int, first_name: str = "Test", username: str | None = None) -> JsonDict:
        user: JsonDict = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        return user

    def message_dict(self, message: SentMessage) -> JsonDict:
        chat = self.chats[message.chat_id]
        data: JsonDict = {"message_id": message.message_id, "date": message.date, "chat": chat.to_dict()}
        if message.from_bot:
            data["from"] = self.bot_user()
        else:
            data["from"] = self._user(message.user_id or chat.id, chat.first_name or "Test", chat.username)
        if message.edit_count:
            data["edit_date"] = int(time.time())
        if message.kind == "text":
            data["text"] = message.text or ""
            if message.entities:
                data["entities"] = message.entities
        elif message.text:
            data["caption"] = message.text
            if message.entities:
                data["caption_entities"] = message.entities
        data.update(message.media)
        if message.media_group_id:
            data["media_group_id"] = message.media_group_id
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            data["reply_markup"] = message.reply_markup
        if message.reply_to_message_id is not None:
            target = chat.messages.get(message.reply_to_message_id)
            if target is not None:
                data["reply_to_message"] = {
                    key: value for key, value in self.message_dict(target).items() if key != "reply_to_message"
                }
        return data

    # ------------------------------------------------------------------ API methods: bot

    async def _get_me(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _close(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        return True

    async def _set_my_commands(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        commands = _as_json(params.get("commands"), "commands")
        if not isinstance(commands, list):
            raise bad_request('parameter "commands" is required')
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        for command in commands:
            if not isinstance(command, dict) or not COMMAND_RE.match(str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            description = str(command.get("description", ""))
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = [
            {"command": str(c["command"]), "description": str(c["description"])} for c in commands
        ]
        return True

    @staticmethod
    def _commands_key(params: JsonDict) -> tuple[str, str]:
        scope = _as_json(params.get("scope") or {"type": "default"}, "scope")
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _get_my_commands(self, params: JsonDict, files: dict[str, bytes]) -> list[JsonDict]:
        return self.commands.get(self._commands_key(params), [])

    async def _delete_my_commands(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _set_my_description(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        description = str(params.get("description") or "")
        if len(description) > DESCRIPTION_LIMIT:
            raise bad_request("description is too long")
        self.descriptions[str(params.get("language_code") or "")] = description
        return True

    async def _get_my_description(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        return {"description": self.descriptions.get(str(params.get("language_code") or ""), "")}

    async def _set_my_short_description(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        description = str(params.get("short_description") or "")
        if len(description) > SHORT_DESCRIPTION_LIMIT:
            raise bad_request("short description is too long")
        self.short_descriptions[str(params.get("language_code") or "")] = description
        return True

    async def _get_my_short_description(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        lang = str(params.get("language_code") or "")
        return {"short_description": self.short_descriptions.get(lang, "")}

    async def _set_my_name(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        name = str(params.get("name") or "")
        if len(name) > 64:
            raise bad_request("name is too long")
        self.names[str(params.get("language_code") or "")] = name
        return True

    async def _get_my_name(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        return {"name": self.names.get(str(params.get("language_code") or ""), self.bot_first_name)}

    async def _set_chat_menu_button(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        return True

    async def _get_chat(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        chat = self._chat(params)
        return {**chat.to_dict(), "accent_color_id": 0, "max_reaction_count": 11}

    # ------------------------------------------------------------------ API methods: updates & webhook

    def _pending(self) -> list[JsonDict]:
        allowed = self.allowed_updates
        if not allowed:
            return [u for u in self._updates if not OPT_IN_UPDATE_TYPES.intersection(u)]
        return [u for u in self._updates if any(kind in u for kind in allowed)]

    async def _get_updates(self, params: JsonDict, files: dict[str, bytes]) -> list[JsonDict]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params, "offset", required=False)
        limit = _as_int(params, "limit", required=False) or 100
        limit = min(max(limit, 1), 100)
        timeout = _as_int(params, "timeout", required=False) or 0
        if "allowed_updates" in params:
            allowed = _as_json(params["allowed_updates"], "allowed updates")
            self.allowed_updates = list(allowed) if allowed else None
            # Telegram does not keep updates of types the bot opted out of.
            wanted = {u["update_id"] for u in self._pending()}
            self._updates = [u for u in self._updates if u["update_id"] in wanted]
        if offset is not None:
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        # Wake a poll that is still waiting so that it ends with a conflict right away.
        self._notify(activity=False)
        deadline = time.monotonic() + timeout
        while True:
            pending = self._pending()
            if pending or self._closing:
                break
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
        batch = self._pending()[:limit]
        if batch:
            self._delivered_upto = max(self._delivered_upto, batch[-1]["update_id"])
        return batch

    async def _set_webhook(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params, files)
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise bad_request("invalid webhook URL specified")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN_RE.match(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        allowed = _as_json(params.get("allowed_updates"), "allowed updates")
        if allowed is not None:
            self.allowed_updates = list(allowed) or None
        self.webhook = {
            "url": url,
            "secret_token": None if secret is None else str(secret),
            "max_connections": _as_int(params, "max_connections", required=False) or 40,
            "ip_address": params.get("ip_address"),
        }
        self._ensure_webhook_task()
        return True

    async def _delete_webhook(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        self.webhook = None
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        info: JsonDict = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending()),
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            if self.allowed_updates:
                info["allowed_updates"] = self.allowed_updates
            if self.webhook_errors:
                info["last_error_date"] = int(time.time())
                info["last_error_message"] = self.webhook_errors[-1]
        return info

    def _ensure_webhook_task(self) -> None:
        if not self.webhook_auto_deliver or self._closing:
            return
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def _webhook_loop(self) -> None:
        while self.webhook is not None and not self._closing:
            pending = self._pending()
            if not pending:
                await self._changed.wait()
                continue
            self._active_requests += 1
            try:
                status = await self.post_update_to_webhook(pending[0])
            finally:
                self._active_requests -= 1
            if 200 <= status < 300:
                self._confirm(pending[0]["update_id"])
            else:
                await asyncio.sleep(0.5)

    def _confirm(self, update_id: int) -> None:
        self._updates = [u for u in self._updates if u["update_id"] != update_id]
        self._notify()

    async def post_update_to_webhook(self, update: JsonDict, url: str | None = None) -> int:
        """POST one update to the registered webhook (or ``url``) like Telegram does; returns the HTTP status.

        A method call in the response body (the webhook-reply feature) is executed as Telegram would.
        Network failures return status 0 and are recorded in ``webhook_errors``.
        """
        target = url or (self.webhook or {}).get("url")
        if not target:
            raise RuntimeError("no webhook is set")
        headers = {"Content-Type": "application/json"}
        secret = (self.webhook or {}).get("secret_token")
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession()
        try:
            async with self._client.post(
                target, data=json.dumps(update), headers=headers, timeout=aiohttp.ClientTimeout(total=60)
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            self.webhook_errors.append(f"Connection failed: {error}")
            return 0
        if not 200 <= status < 300:
            self.webhook_errors.append(f"Wrong response from the webhook: {status}")
            return status
        await self._run_webhook_reply(body)
        return status

    async def _run_webhook_reply(self, body: bytes) -> None:
        if not body:
            return
        try:
            reply = json.loads(body)
        except ValueError:
            return
        if not isinstance(reply, dict) or "method" not in reply:
            return
        method = str(reply.pop("method"))
        call = Call(method=method, params=reply, time=time.monotonic())
        self.calls.append(call)
        handler = self._handlers.get(method.lower())
        if handler is None:
            call.ok, call.error_code, call.description = False, 404, "Not Found"
            return
        try:
            await handler(reply, {})
            call.ok = True
        except ApiError as error:
            call.ok, call.error_code, call.description = False, error.error_code, error.description
        self._notify()

    # ------------------------------------------------------------------ API methods: messages

    async def _send_message(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        chat = self._chat(params)
        self._check_can_send(chat)
        buckets = self._check_limits(chat)
        plain, raw, entities = self._parse_text(params, "text", TEXT_LIMIT)
        markup = validate_reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(chat, params)
        message = self._store_bot_message(
            chat,
            text=plain,
            html=raw,
            parse_mode=params.get("parse_mode") or None,
            entities=entities or None,
            reply_markup=markup,
            reply_to_message_id=reply_to,
        )
        self._take(buckets)
        return self.message_dict(message)

    def _bot_message_to_edit(self, params: JsonDict) -> tuple[Chat, SentMessage]:
        if params.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(params)
        message_id = _as_int(params, "message_id")
        message = chat.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise bad_request("message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        self._check_can_send(chat)
        return chat, message

    async def _edit_message_text(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        chat, message = self._bot_message_to_edit(params)
        buckets = self._check_limits(chat)
        if message.kind != "text":
            raise bad_request("there is no text in the message to edit")
        plain, raw, entities = self._parse_text(params, "text", TEXT_LIMIT)
        markup = validate_reply_markup(params.get("reply_markup"))
        parse_mode = params.get("parse_mode") or None
        # Telegram compares the parsed result, so different markup producing the same entities is no change.
        if (plain, entities or None, markup) == (message.text, message.entities, message.reply_markup):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        message.history.append(message.html or "")
        message.text, message.html, message.parse_mode = plain, raw, parse_mode
        message.entities = entities or None
        message.reply_markup = markup
        message.edit_count += 1
        self._take(buckets)
        return self.message_dict(message)

    async def _edit_message_reply_markup(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        _, message = self._bot_message_to_edit(params)
        markup = validate_reply_markup(params.get("reply_markup"))
        if markup == message.reply_markup:
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        message.reply_markup = markup
        message.edit_count += 1
        return self.message_dict(message)

    async def _delete_message(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        chat = self._chat(params)
        message = chat.messages.get(_as_int(params, "message_id") or 0)
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        if not message.from_bot and chat.type != "private":
            raise bad_request("message can't be deleted")
        message.deleted = True
        return True

    async def _send_message_draft(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        chat = self._chat(params)
        draft_id = _as_int(params, "draft_id")
        if not draft_id:
            raise bad_request("draft_id must be non-zero")
        if chat.type != "private":
            raise bad_request("TEXTDRAFT_PEER_INVALID")
        self._check_can_send(chat)
        buckets = self._check_limits(chat, draft=True)
        # An empty text is allowed and shows the 'Thinking…' placeholder.
        plain, raw, _ = self._parse_text(params, "text", TEXT_LIMIT, allow_empty=True)
        chat.drafts.frames.append(
            DraftFrame(
                draft_id=draft_id,
                text=plain,
                html=raw,
                parse_mode=params.get("parse_mode") or None,
                time=time.monotonic(),
            )
        )
        chat.drafts.active = True
        self._take(buckets)
        return True

    async def _send_chat_action(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        chat = self._chat(params)
        self._check_can_send(chat)
        action = str(params.get("action") or "")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        chat.actions.append((action, time.monotonic()))
        return True

    async def _answer_callback_query(self, params: JsonDict, files: dict[str, bytes]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise bad_request(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        text = params.get("text")
        if text is not None and len(str(text)) > CALLBACK_ANSWER_LIMIT:
            raise bad_request("MESSAGE_TOO_LONG")
        del self._open_queries[query_id]
        self.callback_answers[query_id] = dict(params)
        return True

    # ------------------------------------------------------------------ API methods: files

    def _store_file(self, data: bytes, path_prefix: str, suffix: str, size: int | None = None) -> StoredFile:
        number = next(self._file_ids)
        digest = hashlib.sha1(data + str(number).encode(), usedforsecurity=False).hexdigest()
        stored = StoredFile(
            file_id=f"BQACAgIAAxkBAAI{number:06d}{digest[:24]}",
            file_unique_id=f"AgAD{number:04d}{digest[:8]}",
            data=data,
            file_path=f"{path_prefix}/file_{number}{suffix}",
            file_size=len(data) if size is None else size,
        )
        self.files[stored.file_id] = stored
        self.files_by_path[stored.file_path] = stored
        return stored

    async def _get_file(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        stored = self.files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.refused is not None:
            raise bad_request(stored.refused)
        if stored.file_size > DOWNLOAD_LIMIT:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    def _input_file(self, params: JsonDict, files: dict[str, bytes], key: str) -> tuple[StoredFile, str]:
        value = params.get(key)
        if isinstance(value, str) and value.startswith("attach://"):
            name = value.removeprefix("attach://")
            if name not in files:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return self._store_file(files[name], key + "s", ""), name
        if key in files:
            return self._store_file(files[key], key + "s", ""), key
        if isinstance(value, str) and value in self.files:
            return self.files[value], value
        raise bad_request("wrong file identifier/HTTP URL specified")

    async def _send_media(self, params: JsonDict, files: dict[str, bytes], kind: str) -> JsonDict:
        chat = self._chat(params)
        self._check_can_send(chat)
        buckets = self._check_limits(chat)
        plain, raw, entities = self._parse_text(params, "caption", CAPTION_LIMIT, allow_empty=True)
        markup = validate_reply_markup(params.get("reply_markup"))
        stored, name = self._input_file(params, files, kind)
        if kind == "document":
            media: JsonDict = {
                "document": {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_name": name,
                    "file_size": stored.file_size,
                }
            }
        else:
            media = {"photo": self._photo_sizes(stored)}
        message = self._store_bot_message(
            chat,
            kind=kind,
            text=plain or None,
            html=raw,
            parse_mode=params.get("parse_mode") or None,
            entities=entities,
            reply_markup=markup,
            reply_to_message_id=self._reply_to(chat, params),
            media=media,
        )
        self._take(buckets)
        return self.message_dict(message)

    async def _send_document(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        return await self._send_media(params, files, "document")

    async def _send_photo(self, params: JsonDict, files: dict[str, bytes]) -> JsonDict:
        return await self._send_media(params, files, "photo")

    @staticmethod
    def _photo_sizes(stored: StoredFile, width: int = 1280, height: int = 960) -> list[JsonDict]:
        sizes = []
        for scale, suffix in ((16, "s"), (4, "m"), (1, "x")):
            sizes.append(
                {
                    "file_id": stored.file_id if scale == 1 else f"{stored.file_id}_{suffix}",
                    "file_unique_id": f"{stored.file_unique_id}{suffix}",
                    "width": max(1, width // scale),
                    "height": max(1, height // scale),
                    "file_size": max(1, stored.file_size // (scale * scale)),
                }
            )
        return sizes

    # ------------------------------------------------------------------ test API: feeding updates

    def add_chat(
        self,
        chat_id: int,
        chat_type: str = "private",
        *,
        first_name: str = "Test",
        username: str | None = None,
        title: str | None = None,
    ) -> Chat:
        """Make a chat known (a user who started the bot, or a group the bot is in)."""
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = self.chats[chat_id] = Chat(
                id=chat_id, type=chat_type, first_name=first_name, username=username, title=title
            )
        return chat

    def push_update(self, payload: JsonDict) -> int:
        """Queue a raw update (without update_id); returns the assigned update id."""
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **payload})
        self._notify()
        if self.webhook is not None:
            self._ensure_webhook_task()
        return update_id

    def _user_message(
        self,
        chat_id: int,
        *,
        user_id: int | None,
        first_name: str,
        chat_type: str,
        text: str | None = None,
        kind: str = "text",
        media: JsonDict | None = None,
        media_group_id: str | None = None,
        title: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        chat = self.add_chat(chat_id, chat_type, first_name=first_name, title=title)
        entities = bot_command_entities(text) if text and kind == "text" else None
        message = SentMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat),
            from_bot=False,
            date=int(time.time()),
            text=text,
            html=text,
            kind=kind,
            entities=entities,
            media=media or {},
            user_id=user_id if user_id is not None else (chat_id if chat_type == "private" else 1000),
            media_group_id=media_group_id,
            reply_to_message_id=reply_to_message_id,
        )
        chat.messages[message.message_id] = message
        data = self.message_dict(message)
        data["from"] = self._user(message.user_id or chat_id, first_name, chat.username)
        return self.push_update({"message": data})

    def user_message(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        first_name: str = "Test",
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
        quote: str | None = None,
        extra: JsonDict | None = None,
    ) -> int:
        """A user writes ``text`` in ``chat_id``; returns the update id.

        ``quote`` is the part of the ``reply_to_message_id`` message the user quoted in their reply (it must occur
        in that message's text); ``extra`` holds more message fields as Telegram sends them (``forward_origin``...).
        """
        fields = dict(extra or {})
        if quote is not None:
            fields["quote"] = self._quote(chat_id, reply_to_message_id, quote)
        return self._user_message(
            chat_id,
            user_id=user_id,
            first_name=first_name,
            chat_type=chat_type,
            text=text,
            media=fields,
            reply_to_message_id=reply_to_message_id,
        )

    def _quote(self, chat_id: int, reply_to_message_id: int | None, quote: str) -> JsonDict:
        chat = self.chats.get(chat_id)
        target = chat.messages.get(reply_to_message_id) if chat and reply_to_message_id is not None else None
        if target is None or quote not in (target.text or ""):
            raise LookupError(f"message {reply_to_message_id} in chat {chat_id} has no text {quote!r} to quote")
        position = utf16_len((target.text or "")[: (target.text or "").index(quote)])
        return {"text": quote, "position": position, "is_manual": True}

    def user_content(
        self, chat_id: int, content: JsonDict, caption: str | None = None, user_id: int | None = None
    ) -> int:
        """A user sends a message of any other kind, or a service message appears in the chat: ``content`` holds
        its fields as Telegram sends them (``{"dice": {"emoji": "🎲", "value": 3}}``, ``{"pinned_message": ...}``).
        Returns the update id."""
        chat_type = self._chat_type(chat_id)
        return self._user_message(
            chat_id,
            user_id=user_id,
            first_name="Test",
            chat_type=chat_type,
            text=caption,
            kind=next(iter(content), "other"),
            media=content,
            title=None if chat_type == "private" else "Test group",
        )

    def edit_user_message(
        self, chat_id: int, message_id: int, text: str | None = None, media: JsonDict | None = None
    ) -> int:
        """The user edits their message: a new ``text`` (the caption of a media message) and/or new ``media``
        fields (a shared live location moving). Returns the id of the ``edited_message`` update."""
        chat = self.chats.get(chat_id)
        message = chat.messages.get(message_id) if chat else None
        if chat is None or message is None or message.from_bot or message.deleted:
            raise LookupError(f"no user message {message_id} in chat {chat_id}")
        if text is not None:
            message.history.append(message.html or "")
            message.text = message.html = text
            message.entities = None
        message.media.update(media or {})
        message.edit_count += 1
        return self.push_update({"edited_message": self.message_dict(message)})

    def user_long_message(self, chat_id: int, text: str, user_id: int | None = None) -> list[int]:
        """A user pastes a text longer than 4096 characters: the client sends it as several messages."""
        return [self.user_message(chat_id, part, user_id=user_id) for part in split_like_client(text)]

    def group_message(self, chat_id: int, text: str, user_id: int | None = None, chat_type: str = "supergroup") -> int:
        return self._user_message(
            chat_id, user_id=user_id, first_name="Test", chat_type=chat_type, text=text, title="Test group"
        )

    def last_user_message_id(self, chat_id: int) -> int:
        chat = self.chats.get(chat_id)
        if chat is None:
            return 0
        return max((m.message_id for m in chat.messages.values() if not m.from_bot), default=0)

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        callback_data: str,
        user_id: int | None = None,
        strict: bool = True,
    ) -> str:
        """A user presses an inline button; returns the callback query id.

        With ``strict`` the button must be present in the message's current keyboard, as a real client can only
        press what it shows; pass ``strict=False`` to simulate a stale keyboard.
        """
        chat = self.chats.get(chat_id)
        message = chat.messages.get(message_id) if chat else None
        if chat is None or message is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        if strict and (message.deleted or callback_data not in message.callback_data):
            raise LookupError(f"message {message_id} has no button {callback_data!r}: {message.callback_data}")
        query_id = str(4_000_000_000_000_000_000 + next(self._query_ids))
        self._open_queries[query_id] = (chat_id, message_id)
        uid = user_id if user_id is not None else (chat_id if chat.type == "private" else 1000)
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(uid, chat.first_name or "Test", chat.username),
                    "message": self._callback_message(message),
                    "chat_instance": str(-abs(hash((self.bot_id, chat_id))) % 10**18),
                    "data": callback_data,
                }
            }
        )
        return query_id

    def _callback_message(self, message: SentMessage) -> JsonDict:
        if message.deleted:
            # What Telegram sends for a message the bot can no longer access.
            return {"chat": self.chats[message.chat_id].to_dict(), "message_id": message.message_id, "date": 0}
        return self.message_dict(message)

    def callback_answer(self, query_id: str) -> JsonDict | None:
        """Parameters of answerCallbackQuery for ``query_id``, or None if not answered yet."""
        return self.callback_answers.get(query_id)

    def user_document(
        self,
        chat_id: int,
        data: bytes,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        media_group_id: str | None = None,
        file_size: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """A user sends a file (in reply to ``reply_to_message_id``). ``file_size`` overrides the reported size (e.g.
        >20 MB: getFile then fails)."""
        suffix = "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ""
        stored = self._store_file(data, "documents", suffix, size=file_size)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            text=caption,
            kind="document",
            media={"document": document},
            media_group_id=media_group_id,
            reply_to_message_id=reply_to_message_id,
        )

    def user_photo(
        self,
        chat_id: int,
        data: bytes,
        caption: str | None = None,
        media_group_id: str | None = None,
        width: int = 1280,
        height: int = 960,
    ) -> int:
        """A user sends a photo; the update carries three sizes, the largest one holding ``data``."""
        stored = self._store_file(data, "photos", ".jpg")
        sizes = self._photo_sizes(stored, width, height)
        for size in sizes[:-1]:
            small = StoredFile(
                file_id=size["file_id"],
                file_unique_id=size["file_unique_id"],
                data=data,
                file_path=f"{stored.file_path}.{size['width']}",
                file_size=size["file_size"],
            )
            self.files[small.file_id] = small
            self.files_by_path[small.file_path] = small
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            text=caption,
            kind="photo",
            media={"photo": sizes},
            media_group_id=media_group_id,
        )

    def user_video(
        self, chat_id: int, file_id: str, media_group_id: str | None = None, forward_origin: JsonDict | None = None
    ) -> int:
        """A user sends (or forwards, from ``forward_origin``) a video, alone or as part of an album."""
        video = {"file_id": file_id, "file_unique_id": file_id, "width": 640, "height": 480, "duration": 3}
        media: JsonDict = {"video": video}
        if forward_origin is not None:
            media["forward_origin"] = forward_origin
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            kind="video",
            media=media,
            media_group_id=media_group_id,
        )

    def user_sticker(self, chat_id: int, emoji: str = "👍") -> int:
        stored = self._store_file(b"RIFF....WEBP", "stickers", ".webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.file_size,
        }
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            kind="sticker",
            media={"sticker": sticker},
        )

    def user_voice(self, chat_id: int, data: bytes = b"OggS", duration: int = 3) -> int:
        stored = self._store_file(data, "voice", ".oga")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.file_size,
        }
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            kind="voice",
            media={"voice": voice},
        )

    def user_location(self, chat_id: int, latitude: float = 55.7558, longitude: float = 37.6173) -> int:
        return self._user_message(
            chat_id,
            user_id=None,
            first_name="Test",
            chat_type=self._chat_type(chat_id),
            kind="location",
            media={"location": {"latitude": latitude, "longitude": longitude}},
        )

    def _chat_type(self, chat_id: int) -> str:
        chat = self.chats.get(chat_id)
        if chat is not None:
            return chat.type
        return "private" if chat_id > 0 else "supergroup"

    def file_bytes(self, file_id: str) -> bytes:
        return self.files[file_id].data

    def withhold_file(self, data: bytes, reason: str = FILE_UNAVAILABLE) -> list[str]:
        """getFile refuses every file holding ``data`` (each size of a photo) with 400 "Bad Request: ``reason``"
        (by default Telegram's answer for a file it cannot hand out for a while); returns their file ids."""
        withheld = [stored for stored in self.files.values() if stored.data == data]
        if not withheld:
            raise KeyError("no file holds these bytes")
        for stored in withheld:
            stored.refused = reason
        return [stored.file_id for stored in withheld]

    # ------------------------------------------------------------------ test API: faults

    def hold(self, method: str) -> None:
        """Keep calls of ``method`` waiting (in flight, unanswered) until ``release(method)``."""
        self._held.setdefault(method.lower(), asyncio.Event())

    def release(self, method: str) -> None:
        gate = self._held.pop(method.lower(), None)
        if gate is not None:
            gate.set()

    @property
    def held_methods(self) -> list[str]:
        """Methods ``hold`` keeps waiting (lower-cased)."""
        return list(self._held)

    @property
    def pending_faults(self) -> list[Fault]:
        """Faults from ``fail_next`` that no call has used up yet."""
        return list(self._faults)

    def clear_faults(self) -> list[Fault]:
        """Drop the faults no call used up; returns them."""
        dropped, self._faults = self._faults, []
        return dropped

    @property
    def active_requests(self) -> int:
        """Bot API calls received and not answered yet (long polls not counted)."""
        return self._active_requests

    def fail_next(
        self,
        method: str,
        error_code: int = 400,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (optionally only for ``chat_id``) with an error."""
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {retry_after or 1}"
            elif error_code == 403:
                description = BLOCKED
            elif error_code >= 500:
                description = "Internal Server Error"
            else:
                description = "Bad Request: injected failure"
        if error_code == 429 and retry_after is None:
            retry_after = 1
        self._faults.append(Fault(method, ApiError(error_code, description, retry_after), times, chat_id))

    def block_user(self, chat_id: int, notify: bool = False) -> None:
        """The user blocks the bot: every send to the chat answers 403. With ``notify`` the bot also gets the
        ``my_chat_member`` update Telegram sends in that case."""
        chat = self.add_chat(chat_id)
        chat.blocked = True
        if notify:
            self.push_update(
                {
                    "my_chat_member": {
                        "chat": chat.to_dict(),
                        "from": self._user(chat_id, chat.first_name or "Test"),
                        "date": int(time.time()),
                        "old_chat_member": {"status": "member", "user": self.bot_user()},
                        "new_chat_member": {"status": "kicked", "user": self.bot_user(), "until_date": 0},
                    }
                }
            )

    def unblock_user(self, chat_id: int) -> None:
        self.add_chat(chat_id).blocked = False

    # ------------------------------------------------------------------ test API: inspection

    def sent_messages(self, chat_id: int, include_deleted: bool = False) -> list[SentMessage]:
        """Bot messages in ``chat_id`` in order, in their current (edited) state."""
        chat = self.chats.get(chat_id)
        if chat is None:
            return []
        return [
            message
            for _, message in sorted(chat.messages.items())
            if message.from_bot and (include_deleted or not message.deleted)
        ]

    def sent_texts(self, chat_id: int) -> list[str]:
        return [message.text or "" for message in self.sent_messages(chat_id)]

    def joined_text(self, chat_id: int, after_message_id: int = 0, separator: str = "\n") -> str:
        """Visible text of the bot's messages after ``after_message_id`` glued together, to check a long answer
        that the bot split into several messages."""
        return separator.join(
            message.text or "" for message in self.sent_messages(chat_id) if message.message_id > after_message_id
        )

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        return self.chats[chat_id].messages[message_id]

    def drafts(self, chat_id: int) -> ChatDrafts:
        chat = self.chats.get(chat_id)
        return chat.drafts if chat is not None else ChatDrafts()

    def chat_actions(self, chat_id: int) -> list[str]:
        chat = self.chats.get(chat_id)
        return [action for action, _ in chat.actions] if chat is not None else []

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[JsonDict]:
        """Updates not yet confirmed by the bot (delivered or not)."""
        return list(self._updates)

    @property
    def undelivered_updates(self) -> list[JsonDict]:
        return [u for u in self._pending() if u["update_id"] > self._delivered_upto]

    # ------------------------------------------------------------------ test API: waiting

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - a plain deadline reads better in tests
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every API call and every 50 ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{what} not reached within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.05))

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        after_message_id: int | None = None,
    ) -> SentMessage:
        """Wait for a visible bot message in ``chat_id`` matching ``predicate`` (checked on the current, edited
        state) and return it.

        Only messages newer than ``after_message_id`` count; by default that is the latest user message in the
        chat at call time, i.e. the bot's answer to what the test just sent. Pass 0 to accept any message.
        """
        after = self.last_user_message_id(chat_id) if after_message_id is None else after_message_id
        found: list[SentMessage] = []

        def matches() -> bool:
            for message in self.sent_messages(chat_id):
                if message.message_id > after and (predicate is None or predicate(message)):
                    found.append(message)
                    return True
            return False

        try:
            await self.wait_until(matches, timeout)
        except TimeoutError:
            texts = [m.text for m in self.sent_messages(chat_id) if m.message_id > after]
            raise TimeoutError(
                f"no matching bot message in chat {chat_id} within {timeout}s; bot messages: {texts}"
            ) from None
        return found[0]

    async def wait_idle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has fetched every update, no request (other than a long poll) is in flight and
        no request arrived for ``quiet`` seconds."""
        await self.wait_until(lambda: self.is_idle(quiet), timeout, what="idle")

    def is_idle(self, quiet: float) -> bool:
        """Whether every update was fetched, no request (other than a long poll) is in flight and none arrived or
        ended in the last ``quiet`` seconds."""
        return (
            not self.undelivered_updates
            and self._active_requests == 0
            and time.monotonic() - self._last_activity >= quiet
        )

    # ------------------------------------------------------------------ standalone control API

    async def _control_user_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        update_id = self.user_message(int(body["chat_id"]), str(body["text"]), user_id=body.get("user_id"))
        return web.json_response({"update_id": update_id})

    async def _control_sent(self, request: web.Request) -> web.Response:
        chat_id = int(request.query["chat_id"])
        messages = [
            {"message_id": m.message_id, "text": m.text, "html": m.html, "reply_markup": m.reply_markup}
            for m in self.sent_messages(chat_id)
        ]
        return web.json_response({"messages": messages, "drafts": self.drafts(chat_id).count})

    async def _control_stats(self, request: web.Request) -> web.Response:
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        return web.json_response(
            {
                "calls": counts,
                "flood_errors": self.flood_errors,
                "pending_updates": len(self._updates),
                "undelivered_updates": len(self.undelivered_updates),
            }
        )


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeTelegram(token=args.token, host=args.host, port=args.port, enforce_limits=args.enforce_limits)
    async with fake:
        print(f"fake Telegram Bot API listening on {fake.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123:ABC")
    parser.add_argument("--enforce-limits", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
