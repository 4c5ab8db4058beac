"""A request's photos and files as model input, without Telegram: the order and the overlap of their reading."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from pomogator.errors import CorruptFile
from pomogator.llm.catalog import load_catalog
from pomogator.services.files.request import Attachment, AttachmentRequest
from tests.services.test_files import make_png


class Downloads:
    """Serves each attachment's bytes after a pause, counting how many are in flight at once."""

    def __init__(self, files: dict[str, bytes], pause: float = 0.05) -> None:
        self.files = files
        self.pause = pause
        self.in_flight = 0
        self.most = 0

    async def __call__(self, attachment: Attachment) -> bytes:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.pause)
            return self.files[attachment.file_id]
        finally:
            self.in_flight -= 1


def photo(file_id: str) -> Attachment:
    return Attachment(file_id, "фото", None, "image/jpeg", photo=True)


def text_file(file_id: str) -> Attachment:
    return Attachment(file_id, f"{file_id}.txt", None, "text/plain", photo=False)


async def test_the_photos_of_an_album_are_read_at_once_and_keep_their_order() -> None:
    catalog = load_catalog(None)
    pictures = {f"p{i}": make_png() for i in range(4)}
    downloads = Downloads(pictures)
    request = AttachmentRequest([photo(name) for name in pictures], catalog.default, None, catalog)
    prepared = await request.read(downloads)
    assert downloads.most == 4
    content = cast(list[dict[str, Any]], prepared.content)
    assert [part["type"] for part in content] == ["text", "image_url", "image_url", "image_url", "image_url"]


async def test_documents_are_read_in_turn_beside_the_photos() -> None:
    catalog = load_catalog(None)
    files = {"a": b"first", "b": b"second", "p": make_png()}
    downloads = Downloads(files)
    attachments = [text_file("a"), text_file("b"), photo("p")]
    prepared = await AttachmentRequest(attachments, catalog.default, None, catalog).read(downloads)
    assert downloads.most == 2  # the photo beside one document at a time
    text = cast(list[dict[str, Any]], prepared.content)[0]["text"]
    assert text.index("first") < text.index("second")


async def test_a_reading_cancelled_while_photos_are_fetched_leaves_none_of_them_running() -> None:
    # /stop, or a shutdown, while an album is downloaded: its photos' downloads and children end with it.
    catalog = load_catalog(None)
    downloads = Downloads({f"p{i}": make_png() for i in range(3)}, pause=30)
    request = AttachmentRequest([photo(f"p{i}") for i in range(3)], catalog.default, None, catalog)
    reading = asyncio.ensure_future(request.read(downloads))
    await asyncio.sleep(0.2)
    assert downloads.in_flight == 3
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert downloads.in_flight == 0


async def test_a_photo_that_cannot_be_read_is_left_out_and_the_rest_answered() -> None:
    catalog = load_catalog(None)
    files = {"bad": b"not a picture at all", **{f"p{i}": make_png() for i in range(2)}}
    broken = Attachment("bad", "broken.png", None, "image/png", photo=False)
    request = AttachmentRequest([broken, photo("p0"), photo("p1")], catalog.default, None, catalog)
    prepared = await request.read(Downloads(files))
    assert [type(exc) for exc in prepared.unreadable] == [CorruptFile]
    assert [part["type"] for part in cast(list[dict[str, Any]], prepared.content)][1:] == ["image_url"] * 2
