"""The messages that show one answer, kept in step with its rendered chunks."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import InlineKeyboardMarkup

from pomogator.bot.answer.output import ChatOutput


@dataclass(slots=True)
class Posted:
    message_id: int
    html: str
    markup: InlineKeyboardMarkup | None


class MessageChain:
    """Message ``i`` of the chain shows chunk ``i`` of the answer."""

    def __init__(self, out: ChatOutput) -> None:
        self.out = out
        self.posted: list[Posted] = []

    def __len__(self) -> int:
        return len(self.posted)

    async def put(self, index: int, html: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Make message ``index`` show ``html``: edit it if it differs, send it if it does not exist yet."""
        if index < len(self.posted):
            current = self.posted[index]
            if current.html == html and current.markup == markup:
                return
            if await self.out.edit(current.message_id, html, markup):
                current.html, current.markup = html, markup
                return
            # The user deleted it: the chunk comes again as a new message, so nothing is missing, and the messages
            # after it come again after it, so the answer still reads in order.
            later = self.posted[index + 1 :]
            for posted in later:
                await self.out.delete(posted.message_id)
            current.message_id = await self.out.send(html, markup)
            current.html, current.markup = html, markup
            for posted in later:
                posted.message_id = await self.out.send(posted.html, posted.markup)
            return
        if index != len(self.posted):
            raise IndexError("chunks are posted in order")
        self.posted.append(Posted(await self.out.send(html, markup), html, markup))

    async def sync(self, chunks: list[str]) -> None:
        """Make the chain show exactly ``chunks``, without buttons."""
        for index, chunk in enumerate(chunks):
            await self.put(index, chunk)
        while len(self.posted) > len(chunks):
            await self.out.delete(self.posted.pop().message_id)

    async def discard(self) -> None:
        """Delete every message of the chain (the answer failed and is not kept)."""
        while self.posted:
            await self.out.delete(self.posted.pop().message_id)
