from __future__ import annotations

from pomogator.container import Services
from pomogator.services.users import Person
from tests.fakes.openai_server import FakeLLM


async def test_answer_is_streamed_and_context_kept(services: Services, fake_llm: FakeLLM) -> None:
    account = await services.users.touch(Person(42, "Ann"))
    dialog = services.chat.dialog_for(account)
    pieces = [p async for p in services.chat.stream_reply(dialog, "hello there")]
    assert "".join(pieces)
    assert len(pieces) >= 1
    second = [p async for p in services.chat.stream_reply(dialog, "again")]
    assert second
    sent = fake_llm.requests[-1].messages
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "hello there"
    assert (await services.users.profile(42)).requests_today == 2
