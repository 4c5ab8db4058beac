"""Shrinking images before they go to the model: size, format, orientation, decompression bombs, the album cap."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image, ImageDraw

from pomogator.errors import FileTooLarge, ImagesTooLarge, ImageTooLarge
from pomogator.services.files import images
from pomogator.services.files.images import (
    MAX_REQUEST_MEDIA_BYTES,
    MAX_SIDE,
    SHRINK_OVER_BYTES,
    check_media_total,
    image_part,
    media_bytes,
)


def noisy(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture that compresses about as badly as a photo: noise over a gradient."""
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    picture = Image.blend(noise, gradient, 0.5)
    return picture.convert(mode) if mode != "RGB" else picture


def encode(picture: Image.Image, fmt: str, **options: Any) -> bytes:
    if fmt == "PNG":
        options.setdefault("compress_level", 1)  # quick; these pictures are noise anyway
    out = io.BytesIO()
    picture.save(out, fmt, **options)
    return out.getvalue()


def sent(part: dict[str, Any]) -> tuple[str, bytes]:
    """The MIME type and the bytes of an image part's data URL."""
    head, _, payload = part["image_url"]["url"].partition(",")
    return head.removeprefix("data:").removesuffix(";base64"), base64.b64decode(payload)


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` in a few dozen bytes: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --- shrinking --------------------------------------------------------------------------------------------


def test_a_big_photo_is_shrunk_to_max_side_as_jpeg() -> None:
    data = encode(noisy(4000, 3000), "JPEG", quality=95)
    assert len(data) > SHRINK_OVER_BYTES
    mime, out = sent(image_part(data, "image/jpeg", filename="photo.jpg"))
    assert mime == "image/jpeg"
    picture = opened(out)
    assert picture.format == "JPEG"
    assert max(picture.size) <= MAX_SIDE
    assert picture.size[0] / picture.size[1] == pytest.approx(4 / 3, rel=0.01)
    assert len(out) < len(data) / 3


def test_a_small_image_goes_byte_for_byte() -> None:
    for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
        data = encode(noisy(640, 480), fmt)
        assert len(data) <= SHRINK_OVER_BYTES
        assert sent(image_part(data))[1] == data, fmt


def test_a_light_image_over_max_side_is_shrunk() -> None:
    # A long, simple picture: few bytes, too many pixels for what providers look at.
    data = encode(Image.new("RGB", (6000, 300), (250, 250, 250)), "PNG")
    assert len(data) < SHRINK_OVER_BYTES
    assert opened(sent(image_part(data))[1]).size == (MAX_SIDE, round(300 * MAX_SIDE / 6000))


def test_a_big_chart_stays_png() -> None:
    chart = Image.new("RGB", (4000, 3000), "white")
    draw = ImageDraw.Draw(chart)
    for n in range(40):
        draw.rectangle((100 + n * 95, 2800 - n * 60, 160 + n * 95, 2800), fill=(30, 90 + n * 4, 200))
        draw.text((100 + n * 95, 2820), f"{2000 + n}", fill="black")
    data = encode(chart, "PNG", compress_level=6)
    mime, out = sent(image_part(data))
    assert mime == "image/png"
    assert opened(out).size == (MAX_SIDE, 1536)


def test_a_heavy_image_within_max_side_is_re_encoded_smaller() -> None:
    data = encode(noisy(1800, 1200), "PNG")
    assert len(data) > SHRINK_OVER_BYTES
    mime, out = sent(image_part(data, "image/png"))
    assert mime == "image/jpeg"
    assert opened(out).size == (1800, 1200)
    assert len(out) < len(data)


def test_a_heavy_jpeg_that_does_not_get_smaller_is_kept() -> None:
    # Already compressed harder than JPEG_QUALITY: re-encoding would only lose quality.
    data = encode(noisy(2048, 2048), "JPEG", quality=75)
    assert len(data) > SHRINK_OVER_BYTES
    assert sent(image_part(data))[1] == data


def test_transparency_stays_png_while_small() -> None:
    logo = Image.new("RGBA", (4000, 4000), (0, 0, 0, 0))
    logo.paste((200, 30, 30, 255), (1000, 1000, 3000, 3000))
    mime, out = sent(image_part(encode(logo, "PNG")))
    assert mime == "image/png"
    picture = opened(out)
    assert picture.size == (MAX_SIDE, MAX_SIDE)
    assert picture.mode == "RGBA"
    assert picture.getpixel((0, 0)) == (0, 0, 0, 0)
    assert picture.getpixel((MAX_SIDE // 2, MAX_SIDE // 2)) == (200, 30, 30, 255)


def test_transparency_that_would_stay_big_goes_on_white_as_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PNG_BYTES", 100_000)
    picture = noisy(3000, 1000, "RGBA")
    picture.putalpha(Image.linear_gradient("L").resize((3000, 1000)))
    mime, out = sent(image_part(encode(picture, "PNG")))
    assert mime == "image/jpeg"
    assert max(opened(out).size) == MAX_SIDE


def test_opaque_alpha_is_not_kept() -> None:
    mime, out = sent(image_part(encode(noisy(3000, 1000, "RGBA"), "PNG")))
    assert mime == "image/jpeg"
    assert opened(out).size == (MAX_SIDE, 683)


def test_exif_orientation_is_applied_and_metadata_dropped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise: the camera stored a portrait photo on its side
    exif[0x010F] = "Camera maker"
    data = encode(noisy(3000, 2000), "JPEG", quality=95, exif=exif.tobytes())
    picture = opened(sent(image_part(data))[1])
    assert picture.size == (1365, MAX_SIDE)
    assert 0x0112 not in picture.getexif()
    assert 0x010F not in picture.getexif()


def test_the_first_frame_of_a_big_animation_is_sent() -> None:
    frames = [noisy(2400, 1600, "P") for _ in range(2)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    mime, out = sent(image_part(data, "image/gif"))
    assert mime == "image/jpeg"
    assert opened(out).size == (MAX_SIDE, 1365)


def test_bytes_pillow_cannot_read_go_unchanged() -> None:
    # As before: the provider judges them (a small fake is tested in test_files).
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 5000
    assert len(data) > SHRINK_OVER_BYTES
    assert sent(image_part(data, "image/jpeg"))[1] == data


def test_a_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 MP over a 4 MP decoding limit: a JPEG is decoded at half its size, a PNG has to be decoded whole.
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 4_000_000)
    picture = noisy(4000, 3000)
    assert max(opened(sent(image_part(encode(picture, "JPEG")))[1]).size) <= MAX_SIDE
    with pytest.raises(ImageTooLarge) as caught:
        image_part(encode(picture.resize((400, 300)).resize((4000, 3000)), "PNG"), filename="big.png")
    assert (caught.value.filename, caught.value.limit, caught.value.dimensions) == ("big.png", 4_000_000, (4000, 3000))


# --- decompression bombs ----------------------------------------------------------------------------------


def test_a_decompression_bomb_is_refused() -> None:
    bomb = png_header(20_000, 20_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLarge) as caught:
        image_part(bomb, "image/png", filename="bomb.png")
    assert caught.value.filename == "bomb.png"
    assert caught.value.limit == Image.MAX_IMAGE_PIXELS
    assert "bomb.png" in caught.value.user_message


@pytest.mark.parametrize("pixels", ["over Pillow's warning", "over our decoding limit"])
def test_images_pillow_only_warns_about_are_refused_too(pixels: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS or 0
    side = 10_000 if pixels == "over Pillow's warning" else 6_000
    assert (side * side > limit) is (pixels == "over Pillow's warning")
    with warnings.catch_warnings():
        # Where warnings are not errors (production), the image is refused all the same.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge) as caught:
            image_part(png_header(side, side), "image/png", filename="huge.png")
    assert caught.value.dimensions == (side, side)


def test_decoding_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    most = 0
    entered = 0
    lock = threading.Lock()
    # The first decodes wait for each other, so that as many run at once as may however slow the machine (a
    # lower bound breaks the barrier); the pause after it gives any decode over the bound the time to come in.
    together = threading.Barrier(images.DECODE_SLOTS, timeout=10)

    def slow_shrink(image: Image.Image, filename: str) -> tuple[bytes, str]:
        nonlocal running, most, entered
        with lock:
            running += 1
            most = max(most, running)
            entered += 1
            first = entered <= images.DECODE_SLOTS
        if first:
            together.wait()
        time.sleep(0.05)
        with lock:
            running -= 1
        return b"shrunk", "jpeg"

    monkeypatch.setattr(images, "_shrink", slow_shrink)
    data = encode(Image.new("RGB", (3000, 100)), "PNG")
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda _: image_part(data), range(8)))
    assert all(sent(part)[1] == b"shrunk" for part in parts)
    assert most == images.DECODE_SLOTS


def test_pillow_is_imported_only_for_an_image() -> None:
    code = (
        "import sys\n"
        "import pomogator.services.chat, pomogator.services.files\n"
        "assert 'PIL' not in sys.modules\n"
        "from pomogator.services.files import image_part\n"
        "image_part(b'GIF89a\\x01\\x00\\x01\\x00\\x00\\x00\\x00;')\n"
        "assert 'PIL' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_image_file_over_ten_megabytes_is_read_and_shrunk() -> None:
    data = encode(noisy(3200, 3000), "PNG")
    assert len(data) > 10 * 1024 * 1024
    url = image_part(data, "image/png", filename="screenshot.png")["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,") and len(url) < 2 * 1024 * 1024


def test_the_per_image_limit_still_comes_first() -> None:
    with pytest.raises(FileTooLarge):
        image_part(encode(Image.new("RGB", (10, 10)), "PNG"), max_bytes=10)


# --- the images of one request ----------------------------------------------------------------------------


def image_of(size: int) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(b"x" * size).decode()},
    }


def test_image_bytes_are_counted_decoded() -> None:
    parts = [{"type": "text", "text": "x" * 1000}, image_of(1000), image_of(1001), image_of(1002)]
    parts.append({"type": "image_url", "image_url": {"url": "https://example.org/cat.jpg"}})
    assert media_bytes(parts) == 3003


def test_the_images_of_a_request_have_a_total_cap() -> None:
    check_media_total([image_of(MAX_REQUEST_MEDIA_BYTES // 2), image_of(MAX_REQUEST_MEDIA_BYTES // 2)])
    parts = [{"type": "text", "text": "album"}, *(image_of(MAX_REQUEST_MEDIA_BYTES // 4) for _ in range(5))]
    with pytest.raises(ImagesTooLarge) as caught:
        check_media_total(parts)
    error = caught.value
    assert isinstance(error, FileTooLarge)  # shown as a file that is too large where no better text exists
    assert (error.size, error.limit, error.count) == (5 * (MAX_REQUEST_MEDIA_BYTES // 4), MAX_REQUEST_MEDIA_BYTES, 5)
    assert "5 images" in str(error)


def file_of(size: int) -> dict[str, Any]:
    encoded = base64.b64encode(b"x" * size).decode()
    return {"type": "file", "file": {"filename": "scan.pdf", "file_data": f"data:application/pdf;base64,{encoded}"}}


def test_scans_count_in_the_media_of_a_request() -> None:
    assert media_bytes([image_of(1000), file_of(2001)]) == 3001
    with pytest.raises(ImagesTooLarge) as caught:
        check_media_total([image_of(MAX_REQUEST_MEDIA_BYTES // 2), file_of(MAX_REQUEST_MEDIA_BYTES // 2 + 1)])
    assert caught.value.count == 2


async def test_image_work_waits_on_its_own_threads_and_leaves_the_default_pool_free() -> None:
    loop = asyncio.get_running_loop()
    release = threading.Event()
    slots_taken = asyncio.Event()
    running: list[str] = []
    most = 0

    def work(number: int) -> int:
        nonlocal most
        running.append(threading.current_thread().name)
        most = max(most, len(running))
        if len(running) == images.DECODE_SLOTS:
            loop.call_soon_threadsafe(slots_taken.set)
        release.wait(10)
        running.pop()
        return number

    jobs = [asyncio.create_task(images.in_image_workers(work, n)) for n in range(8)]
    await asyncio.wait_for(slots_taken.wait(), 5)
    # Eight requests' images wait; the loop's default pool (host name lookups) still answers at once.
    assert await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 2) == "free"
    assert all(name.startswith("images") for name in running)
    release.set()
    assert await asyncio.gather(*jobs) == list(range(8))
    assert most == images.DECODE_SLOTS
