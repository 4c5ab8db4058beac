"""Three web instances in webhook mode behind a round-robin balancer, one PostgreSQL database and one Redis.

The tests share the cluster and run in file order: the last ones stop and kill instances.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx
import pytest

from pomogator.bot import texts
from pomogator.config import Settings
from pomogator.container import build_services
from pomogator.llm.catalog import load_catalog
from tests.cli.helpers import clean_env, run_cli
from tests.conftest import make_settings
from tests.fakes.openai_server import Reply
from tests.scale.cluster import LOCK_TTL_S, RECONNECT_S, SECRET, TOKEN, WEBHOOK_PATH, Cluster, update_json

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

DEFAULT = load_catalog().default
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def settings_of(cluster: Cluster) -> Settings:
    return make_settings(database_url=cluster.database_url, openrouter_base_url=cluster.llm.base_url)


def answers(cluster: Cluster, chat: int) -> list[str]:
    return [m.text or "" for m in cluster.tg.sent_messages(chat)]


def answered(cluster: Cluster, chat: int, n: int) -> Callable[[], bool]:
    return lambda: len(answers(cluster, chat)) >= n


def drafting(cluster: Cluster, chat: int) -> Callable[[], bool]:
    return lambda: cluster.tg.drafts(chat).count >= 1


def words(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


async def test_the_cli_registers_the_webhook_with_the_secret(cluster: Cluster) -> None:
    webhook = cluster.tg.webhook
    assert webhook is not None
    assert webhook["url"] == cluster.webhook_url
    assert webhook["secret_token"] == SECRET
    assert {"message", "callback_query"} <= set(cluster.tg.allowed_updates or [])
    env = clean_env(POMOGATOR_BOT_TOKEN=TOKEN, POMOGATOR_TELEGRAM_API_URL=cluster.tg.base_url)
    info = await run_cli("bot", "webhook-info", "--json", cwd=cluster.workdir, env=env)
    assert info.code == 0, info.stderr
    assert json.loads(info.stdout)["url"] == cluster.webhook_url


@pytest.mark.parametrize("header", [None, "wrong-secret", SECRET[:-1], SECRET + "x"])
async def test_an_update_without_the_right_secret_is_refused(cluster: Cluster, header: str | None) -> None:
    chat = cluster.new_chat()
    cluster.tg.add_chat(chat)
    url = cluster.instances[0].url + WEBHOOK_PATH
    headers = {} if header is None else {SECRET_HEADER: header}
    async with httpx.AsyncClient() as client:
        refused = await client.post(url, json=update_json(910_000_000 + chat, chat, "/start"), headers=headers)
        assert refused.status_code == 403
        # The same command with the secret, after it: had the refused one been handled, it would be answered first.
        accepted = await client.post(
            url, json=update_json(911_000_000 + chat, chat, "/start"), headers={SECRET_HEADER: SECRET}
        )
        assert accepted.status_code == 200
    await cluster.tg.wait_for_message(chat, after_message_id=0, timeout=15)
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    assert len(cluster.tg.sent_messages(chat)) == 1


async def test_an_update_with_the_secret_is_accepted_at_once_and_answered(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    cluster.tg.add_chat(chat)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            cluster.instances[1].url + WEBHOOK_PATH,
            json=update_json(920_000_000 + chat, chat, "/start"),
            headers={SECRET_HEADER: SECRET},
        )
        assert response.status_code == 200
        malformed = await client.post(
            cluster.instances[1].url + WEBHOOK_PATH,
            content=b"not json",
            headers={SECRET_HEADER: SECRET},
        )
        assert malformed.status_code == 400
    reply = await cluster.tg.wait_for_message(chat, after_message_id=0, timeout=15)
    assert reply.buttons


async def test_every_message_is_answered_once_in_order_whichever_instance_takes_it(cluster: Cluster) -> None:
    # Five chats, so that the balancer sends the messages of each chat to different instances in turn.
    chats = [cluster.new_chat() for _ in range(5)]
    requests = cluster.llm.request_count
    sent: dict[int, list[int]] = {chat: [] for chat in chats}
    for turn in range(4):
        for chat in chats:
            sent[chat].append(cluster.tg.user_message(chat, f"c{chat} m{turn}"))
    await cluster.all_delivered()
    for chat in chats:
        await cluster.tg.wait_until(answered(cluster, chat, 4), 30, f"answers in {chat}")
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    assert cluster.llm.request_count == requests + 20
    for chat in chats:
        assert answers(cluster, chat) == [f"Echo: c{chat} m{turn}" for turn in range(4)]
        assert len({cluster.balancer.accepted[update] for update in sent[chat]}) == 3
    # Each message of a chat was handled after the ones before it were answered.
    for request in cluster.llm.requests[requests:]:
        text = request.last_user_text
        turn = int(text.rsplit("m", 1)[1])
        assert len(request.messages) == 1 + 2 * turn, (text, request.messages)


async def test_the_quota_is_exact_across_instances(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    async with build_services(settings_of(cluster), migrate=False) as services:
        account = await services.users.ensure(chat)
        for _ in range(account.model.free_daily - 3):
            await services.quota.reserve(chat, account.model, premium=False)
    requests = cluster.llm.request_count
    for i in range(10):
        cluster.tg.user_message(chat, f"q{i}")
    await cluster.tg.wait_until(lambda: len(answers(cluster, chat)) >= 10, 30, "ten replies")
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    mine = [r for r in cluster.llm.requests[requests:] if r.last_user_text.startswith("q")]
    assert [r.last_user_text for r in mine] == ["q0", "q1", "q2"]
    replies = answers(cluster, chat)
    assert replies[:3] == ["Echo: q0", "Echo: q1", "Echo: q2"]
    assert all("лимит" in reply for reply in replies[3:]), replies
    async with build_services(settings_of(cluster), migrate=False) as services:
        assert sum((await services.quota.used_today(chat)).values()) == DEFAULT.free_daily


async def test_a_role_asked_for_on_one_instance_is_set_on_another(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    asked = cluster.pinned_message(chat, "/role", 0)
    prompt = await cluster.tg.wait_for_message(chat, timeout=15)
    assert prompt.buttons
    answered = cluster.pinned_message(chat, "Ты — пират", 1)
    saved = await cluster.tg.wait_for_message(chat, timeout=15)
    assert saved.text == texts.ROLE_SAVED
    used = cluster.pinned_message(chat, "привет", 2)
    await cluster.tg.wait_for_message(chat, timeout=15)
    request = next(r for r in reversed(cluster.llm.requests) if r.last_user_text == "привет")
    assert request.system_prompt == "Ты — пират"
    assert [cluster.balancer.accepted[u] for u in (asked, answered, used)] == [0, 1, 2]


async def test_stop_pressed_on_another_instance_stops_the_answer(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    cancelled = cluster.llm.cancelled_streams
    cluster.llm.enqueue(Reply.slow(400, 40.0))
    cluster.pinned_message(chat, "long story", 0)
    await cluster.tg.wait_until(lambda: (cluster.tg.drafts(chat).latest_text or "").count("tok") >= 3, 15, "a draft")
    draft = cluster.tg.drafts(chat).latest
    assert draft is not None
    chat_json = cluster.tg.add_chat(chat).to_dict()
    cluster.tg.push_update({"stopped_message_generation": {"chat": chat_json, "draft_id": draft.draft_id}})
    cluster.pin_last_update(2)
    answer = await cluster.tg.wait_for_message(chat, timeout=15)
    text = answer.text or ""
    assert text.startswith("tok0 tok1 tok2") and text.endswith("Ответ остановлен")
    assert "tok399" not in text
    await cluster.llm.wait_for_cancelled_streams(cancelled + 1)


async def test_a_message_queued_on_one_instance_before_an_erasure_on_another_is_dropped(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    cluster.pinned_message(chat, "/delete_me", 0)
    prompt = await cluster.tg.wait_for_message(chat, timeout=15)
    cluster.llm.enqueue(Reply.slow(400, 40.0))
    cluster.pinned_message(chat, "long story", 0)
    await cluster.tg.wait_until(lambda: (cluster.tg.drafts(chat).latest_text or "").count("tok") >= 3, 15, "a draft")
    cluster.pinned_message(chat, "queued before the erasure", 1)
    cluster.tg.press_button(chat, prompt.message_id, str(prompt.button(texts.DELETE_ME_CONFIRM)["callback_data"]))
    cluster.pin_last_update(2)
    await cluster.tg.wait_until(
        lambda: texts.DELETE_ME_EARLIER_MESSAGE in cluster.tg.sent_texts(chat), 20, "the queued message dropped"
    )
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    assert cluster.tg.message(chat, prompt.message_id).text == texts.DELETE_ME_DONE
    assert not any(r.last_user_text == "queued before the erasure" for r in cluster.llm.requests)
    async with build_services(settings_of(cluster), migrate=False) as services:
        assert not await services.users.exists(chat)


async def test_a_group_is_told_once_whichever_instances_see_it(cluster: Cluster) -> None:
    group = -1_000_000_000_000 - cluster.new_chat()
    for index in range(3):
        cluster.tg.group_message(group, f"hello {index}", user_id=cluster.new_chat())
        cluster.pin_last_update(index)
    await cluster.all_delivered()
    await cluster.tg.wait_for_message(group, after_message_id=0, timeout=15)
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    sent = cluster.tg.sent_messages(group)
    assert len(sent) == 1
    assert "личных сообщениях" in (sent[0].text or "")


async def test_a_database_outage_is_answered_and_survived(cluster: Cluster) -> None:
    chat = cluster.new_chat()
    cluster.tg.user_message(chat, "before")
    assert (await cluster.tg.wait_for_message(chat, timeout=15)).text == "Echo: before"
    cluster.proxy.cut()
    try:
        await every_instance_health(cluster, 503)
        loop = asyncio.get_running_loop()
        cluster.tg.user_message(chat, "during")
        during_at = loop.time()
        refusal = await cluster.tg.wait_for_message(chat, timeout=RECONNECT_S + 20)
        assert refusal.text == texts.DATABASE_UNAVAILABLE
        # Past the wait, the instances refuse updates with 503 and Telegram keeps them until the database is back.
        # Each instance's wait began with its own failed health check, all of them before "during" was sent: the
        # refusal can come before the last instance's wait is over, which would still take the next update.
        await asyncio.sleep(max(0.0, during_at + RECONNECT_S - loop.time()))
        refused = len(cluster.tg.webhook_errors)
        cluster.tg.user_message(chat, "kept")
        await cluster.tg.wait_until(lambda: len(cluster.tg.webhook_errors) > refused + 1, 20, "refused deliveries")
        assert cluster.tg.sent_texts(chat)[-1] == texts.DATABASE_UNAVAILABLE
    finally:
        cluster.proxy.restore()
    kept = await cluster.tg.wait_for_message(chat, after_message_id=refusal.message_id, timeout=20)
    assert kept.text == "Echo: kept"
    await every_instance_health(cluster, 200)
    cluster.tg.user_message(chat, "after")
    assert (await cluster.tg.wait_for_message(chat, after_message_id=kept.message_id, timeout=20)).text == "Echo: after"
    assert all(instance.alive for instance in cluster.instances)


async def every_instance_health(cluster: Cluster, status: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for instance in cluster.instances:
            for _ in range(200):
                if (await client.get(instance.url + "/healthz")).status_code == status:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"instance {instance.index} never reported {status}")


async def test_sigterm_during_a_streamed_answer_still_delivers_it(cluster: Cluster) -> None:
    chat, other = cluster.new_chat(), cluster.new_chat()
    stopping = cluster.instances[2]
    cluster.llm.enqueue(Reply.slow(30, 3.0))
    cluster.pinned_message(chat, "slow one", 2)
    await cluster.tg.wait_until(lambda: cluster.tg.drafts(chat).count >= 1, 15, "a draft")
    terminated = asyncio.create_task(stopping.terminate())
    # Meanwhile messages keep coming; the stopping instance takes none it could not finish.
    for i in range(3):
        cluster.tg.user_message(other, f"meanwhile {i}")
    # uvicorn shuts down gracefully, then re-raises SIGTERM: the server exits with 128 + SIGTERM.
    assert await terminated in (0, 143)
    assert "Application shutdown complete" in stopping.log()
    assert answers(cluster, chat) == [" ".join(f"tok{i}" for i in range(30))]
    await cluster.tg.wait_until(lambda: len(answers(cluster, other)) >= 3, 20, "the other chat's answers")
    assert answers(cluster, other) == [f"Echo: meanwhile {i}" for i in range(3)]
    # The slow answer was still streaming when shutdown began (a "meanwhile" update may have been in flight too).
    assert re.search(r"Letting [12] update\(s\) in progress finish", stopping.log())
    await stopping.start()


async def test_an_instance_killed_mid_stream_loses_no_other_chat(cluster: Cluster) -> None:
    victim, first, second = cluster.new_chat(), cluster.new_chat(), cluster.new_chat()
    default = cluster.llm.default
    cluster.llm.default = Reply(tokens_per_second=8)
    try:
        cluster.pinned_message(victim, words(20, "v"), 0)
        cluster.pinned_message(first, words(20, "a"), 1)
        cluster.pinned_message(second, words(20, "b"), 2)
        for chat in (victim, first, second):
            await cluster.tg.wait_until(drafting(cluster, chat), 15, "drafts")
        await cluster.instances[0].kill()
        later = [cluster.new_chat() for _ in range(4)]
        for chat in later:
            cluster.tg.user_message(chat, f"after the crash {chat}")
        # The chat whose turn the dead instance held goes on once that turn lapses.
        cluster.tg.user_message(victim, "still there?")
        for chat, word in ((first, "a"), (second, "b")):
            await cluster.tg.wait_until(answered(cluster, chat, 1), 20, "a surviving answer")
            assert answers(cluster, chat) == ["Echo: " + words(20, word)]
    finally:
        cluster.llm.default = default
    for chat in later:
        assert (await cluster.tg.wait_for_message(chat, after_message_id=0, timeout=20)).text == (
            f"Echo: after the crash {chat}"
        )
    reply = await cluster.tg.wait_for_message(victim, after_message_id=0, timeout=LOCK_TTL_S + 20)
    assert reply.text == "Echo: still there?"
    await cluster.tg.wait_idle(quiet=0.5, timeout=20)
    assert answers(cluster, victim) == ["Echo: still there?"]
    assert not cluster.tg.pending_updates
