"""What the bot says about photos and files, in Russian, as Telegram HTML.

File names come from users: every one passes through ``esc``. ``pomogator.bot.texts.error`` hands file errors
here, so they are still translated in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pomogator.errors import (
    CorruptFile,
    DownloadFailed,
    EmptyFile,
    EncryptedFile,
    FileError,
    FileTooComplex,
    FileTooLarge,
    ImagesTooLarge,
    ImageTooLarge,
    NamedFileTooLarge,
    ScanTooLarge,
    ScanTooLong,
    TooManyFiles,
    UnpackedTooLarge,
    UnsupportedFile,
)
from pomogator.services.files import (
    MAX_DOCUMENT_PICTURES,
    MAX_DOCUMENTS_CHARS,
    MAX_DOWNLOAD_BYTES,
    MAX_REQUEST_MEDIA_BYTES,
    MAX_SCAN_BYTES,
    ExtractedDocument,
    PictureLoss,
)
from pomogator.services.files.prompt import page_ranges
from pomogator.services.formatting.plural import plural
from pomogator.services.formatting.text import escape_text as esc

ACCEPTED = (
    "Я понимаю текст, фотографии и файлы: PDF, DOCX, TXT, Markdown, CSV, JSON и исходный код. "
    "К фото или файлу можно добавить вопрос в подписи."
)

# The question the model gets when a photo or a file comes without a caption.
IMAGE_QUESTION = "Что изображено на картинке? Опиши подробно."
IMAGES_QUESTION = "Что изображено на этих картинках? Опиши подробно."
FILE_QUESTION = "Кратко перескажи главное из этого файла."
FILES_QUESTION = "Кратко перескажи главное из этих файлов."


def default_question(documents: int, images: int) -> str:
    if documents:
        return FILES_QUESTION if documents + images > 1 else FILE_QUESTION
    return IMAGES_QUESTION if images > 1 else IMAGE_QUESTION


def megabytes(size: int) -> str:
    mb = size / (1024 * 1024)
    return (f"{mb:.0f}" if mb.is_integer() else f"{mb:.1f}".replace(".", ",")) + " МБ"


def number(value: int) -> str:
    return f"{value:,}".replace(",", "\u00a0")


def file_size(size: int, decimals: int = 0) -> str:
    """A size as people read it: kilobytes below a megabyte (not "0,3 МБ"), megabytes with a decimal above;
    ``decimals`` adds precision."""
    if size < 1024:
        return f"{number(size)} {plural(size, 'байт', 'байта', 'байт')}"
    if size < 1024 * 1024:
        amount, places, unit = size / 1024, decimals, "КБ"
    else:
        amount, places, unit = size / (1024 * 1024), decimals + 1, "МБ"
    shown = f"{amount:.{places}f}"
    if "." in shown:
        shown = shown.rstrip("0").rstrip(".")
    return f"{shown.replace('.', ',')} {unit}"


def size_and_limit(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` with just enough precision to tell them apart: a file over the limit never reads as
    being the limit ("0,3 МБ, а можно не больше 0,3 МБ")."""
    for decimals in range(3):
        shown = file_size(size, decimals), file_size(limit, decimals)
        if shown[0] != shown[1]:
            return shown
    return f"{number(size)} байт", f"{number(limit)} байт"


def pages(value: int) -> str:
    return f"{number(value)} {plural(value, 'страница', 'страницы', 'страниц')}"


def chars(value: int) -> str:
    """A number of characters: 1 символ, 2 символа, 5 символов (the nominative, also the accusative)."""
    return f"{number(value)} {plural(value, 'символ', 'символа', 'символов')}"


def of_total(value: int, one: str, many: str) -> str:
    """The genitive after "из": из 1 страницы, из 3 страниц, из 21 страницы."""
    return f"из {number(value)} {plural(value, one, many, many)}"


# A photo has no file name of its own; a document may come without one.
PHOTO_NAME = "фото"
DOCUMENT_NAME = "файл"

_UNSUPPORTED: dict[str, str] = {
    "image": (
        "Картинки в этом формате модели не понимают. Пришлите JPEG, PNG, GIF, WEBP, BMP или TIFF — или просто как фото."
    ),
    "heic": (
        "Формат HEIC (так iPhone сохраняет снимки) я не читаю. Пришлите снимок как фото, а не файлом, "
        "или сохраните его как JPEG."
    ),
    "archive": "Архивы я не распаковываю. Пришлите нужные файлы по отдельности — можно несколько сразу, альбомом.",
    "executable": "Программы и другие исполняемые файлы я не открываю.",
    "audio": "Аудио и голосовые сообщения я пока не слушаю.",
    "video": "Видео и анимации я пока не смотрю.",
    "legacy-office": (
        "Старые форматы Office (.doc, .xls, .ppt) я не читаю. Сохраните файл в новом формате: "
        "документ — как DOCX или PDF, таблицу — как CSV, презентацию — как PDF."
    ),
    "spreadsheet": "Таблицы Excel я пока не читаю. Сохраните нужный лист как CSV.",
    "presentation": "Презентации я пока не читаю. Сохраните её как PDF.",
    "other-document": "Этот формат документов я не читаю. Сохраните файл как DOCX, PDF или TXT.",
    "rtf": "Формат RTF я не читаю. Сохраните файл как DOCX, PDF или TXT.",
    "binary": "Похоже, это не текст и не документ, который я умею читать.",
    "docx-images": (
        "В документе только картинки, а выбранная модель изображений не видит. "
        "Выберите модель, которая видит картинки: /model."
    ),
    "docx-pictures": (
        "В документе только картинки, и прочитать их не получилось: они повреждены или в форматах, которые модели "
        "не понимают (например, EMF или WMF). Пришлите их как фото или сохраните документ как PDF."
    ),
    "vision": (
        "Это картинка, а выбранная модель изображений не видит. Выберите модель, которая видит картинки: /model."
    ),
    "scan": (
        "Это скан без текстового слоя: его страницы — картинки, а выбранная модель изображений не видит. "
        "Выберите модель, которая видит картинки: /model."
    ),
}


def file_too_large(exc: FileTooLarge) -> str:
    size, limit = size_and_limit(exc.size, exc.limit)
    if isinstance(exc, UnpackedTooLarge):
        return (
            f"📦 «{esc(exc.filename)}» в распакованном виде слишком большой: служебные части документа (стили, "
            f"колонтитулы) занимают {size}, а можно не больше {limit}. "
            "Сохраните его как PDF или пришлите нужный текст файлом TXT."
        )
    if isinstance(exc, ScanTooLarge):
        if exc.limit >= MAX_SCAN_BYTES:
            room = f"можно не больше {limit}"
        else:
            room = f"рядом с остальными картинками и сканами осталось место только на {limit}"
        return (
            f"📄 «{esc(exc.filename)}» — скан без текстового слоя: модель получает такой файл целиком. "
            f"Он весит {size}, а {room}. Пришлите нужные страницы как фото или отдельно, либо сожмите PDF."
        )
    if isinstance(exc, ImagesTooLarge):
        if exc.limit < MAX_REQUEST_MEDIA_BYTES:
            # Other photos, scans or documents of the request took part of the room.
            return (
                f"🖼 Эти картинки вместе весят {size}, а рядом с остальными фото и файлами сообщения осталось место "
                f"только на {limit}: за раз можно не больше {megabytes(MAX_REQUEST_MEDIA_BYTES)}. "
                "Пришлите их частями."
            )
        return f"🖼 Эти картинки вместе слишком большие ({size}), а за раз можно не больше {limit}. Пришлите их частями."
    name = f" «{esc(exc.filename)}»" if isinstance(exc, NamedFileTooLarge) else ""
    if exc.limit == MAX_DOWNLOAD_BYTES:
        shown = f" ({size})" if exc.size > exc.limit else ""
        return (
            f"📦 Файл{name} слишком большой{shown}: Telegram даёт ботам скачивать файлы не больше "
            f"{megabytes(MAX_DOWNLOAD_BYTES)}. Сожмите его или пришлите частями."
        )
    return f"📦 Файл{name} слишком большой: {size}, а можно не больше {limit}."


def image_too_large(exc: ImageTooLarge) -> str:
    dimensions = f" ({exc.dimensions[0]}×{exc.dimensions[1]} пикселей)" if exc.dimensions else ""
    return (
        f"🖼 Картинка «{esc(exc.filename)}» слишком большая{dimensions}: столько пикселей я не обрабатываю. "
        "Пришлите её как фото — Telegram сам уменьшит."
    )


def scan_too_long(exc: ScanTooLong, models: str = "") -> str:
    """A PDF without a text layer goes to the model whole, page images and all; its context may not hold them.
    ``models`` names the models that would read it (the bot's texts know the catalog), else /model is offered."""
    fit = f" (поместится около {number(exc.max_pages)})" if 0 < exc.max_pages < exc.pages else ""
    way_out = models or "выберите модель, которая читает больше за раз: /model."
    return (
        f"📄 «{esc(exc.filename)}» — скан без текстового слоя: такие файлы модель читает постранично, как картинки, "
        f"а в нём {pages(exc.pages)} — столько ей за раз не прочитать{fit}. "
        f"Пришлите нужные страницы как фото или {way_out}"
    )


def file_too_complex(exc: FileTooComplex) -> str:
    return (
        f"🧩 Файл «{esc(exc.filename)}» слишком сложный: прочитать его не получилось за отведённые время и память. "
        "Попробуйте пересохранить его (например, «Печать → Сохранить как PDF») или пришлите нужную часть текстом."
    )


def unsupported_file(exc: UnsupportedFile, *, accepted: bool = True) -> str:
    reason = _UNSUPPORTED.get(exc.kind or "", "Такие файлы я не читаю.")
    # Videos and audio in an album often come without a file name.
    what = f"Не могу прочитать «{esc(exc.filename)}». " if exc.filename else ""
    vision = exc.kind in ("scan", "docx-images", "vision")  # the file is fine: the model is what cannot read it
    return f"{what}{reason}\n\n{ACCEPTED}" if accepted and not vision else f"{what}{reason}"


def unreadable_parts(errors: Iterable[FileError]) -> str:
    """Told before the answer when files of an album (or forwarded with texts) could not be read and the rest goes
    on; each text names its file."""
    return "\n\n".join([*(file_error(exc, accepted=False) for exc in errors), "Отвечаю на остальное."])


def file_error(exc: FileError, *, accepted: bool = True) -> str:
    """The message for a file the bot refused; nothing was asked and no request was counted. ``accepted`` adds
    what the bot does read where the file's kind was the problem."""
    if isinstance(exc, FileTooLarge):
        return file_too_large(exc)
    if isinstance(exc, ImageTooLarge):
        return image_too_large(exc)
    if isinstance(exc, TooManyFiles):
        return (
            f"📎 За один раз я читаю не больше {number(exc.limit)} фото и файлов, а здесь их {number(exc.count)}. "
            "Пришлите их частями."
        )
    if isinstance(exc, ScanTooLong):
        return scan_too_long(exc)
    if isinstance(exc, FileTooComplex):
        return file_too_complex(exc)
    if isinstance(exc, UnsupportedFile):
        return unsupported_file(exc, accepted=accepted)
    if isinstance(exc, DownloadFailed):
        return f"📥 Не удалось скачать «{esc(exc.filename)}» из Telegram — пришлите его ещё раз."
    if isinstance(exc, EmptyFile):
        return f"📭 Файл «{esc(exc.filename)}» пустой — в нём нет текста."
    if isinstance(exc, EncryptedFile):
        return f"🔒 Файл «{esc(exc.filename)}» защищён паролем. Снимите защиту и пришлите его снова."
    if isinstance(exc, CorruptFile):
        return (
            f"Файл «{esc(exc.filename)}» повреждён — прочитать его не получилось. "
            "Попробуйте пересохранить его и прислать снова."
        )
    return f"Этот файл прочитать не получилось.\n\n{ACCEPTED}" if accepted else "Один файл прочитать не получилось."


def scanned_pages_left_out(doc: ExtractedDocument, reason: FileError) -> str:
    """Told before the answer when a PDF with scanned pages goes as its text alone: the file could not go whole."""
    if isinstance(reason, FileTooLarge):
        size, limit = size_and_limit(reason.size, reason.limit)
        room = f"можно не больше {limit}" if reason.limit >= MAX_SCAN_BYTES else f"место осталось только на {limit}"
        why = f"целиком файл слишком большой ({size}, а {room})"
    elif isinstance(reason, ScanTooLong):
        why = f"целиком файл ({pages(reason.pages)}) выбранной модели за раз не прочитать"
    else:
        why = "выбранная модель изображений не видит (сменить модель: /model)"
    numbers = page_ranges(doc.scanned_pages).replace("-", "–")
    if len(doc.scanned_pages) == 1:
        what, them, pictures_of = f"страница {numbers} — скан", "её", "картинки этой страницы"
    else:
        what, them, pictures_of = f"страницы {numbers} — сканы", "их", "картинок этих страниц"
    return (
        f"📄 В «{esc(doc.filename)}» {what} без текстового слоя, и прочитать {them} не получится: {why}. "
        f"Модель получит только текст файла, без {pictures_of}."
    )


_PICTURE_LOSSES: dict[PictureLoss, str] = {
    "format": "формат (EMF, WMF или другой векторный) модели не понимают",
    "unreadable": "прочитать не получилось",
    "count": f"больше {number(MAX_DOCUMENT_PICTURES)} картинок из одного документа я не передаю",
    "size": f"не хватило места: картинок и сканов за раз можно не больше {megabytes(MAX_REQUEST_MEDIA_BYTES)}",
    "time": "обработка картинок заняла слишком много времени",
    "vision": "выбранная модель изображений не видит",
}


def pictures_left_out(doc: ExtractedDocument) -> str:
    """Told before the answer when pictures of a DOCX (``pictures_left_out``) do not go to the model: all of them,
    for a model that cannot see, or some (by their numbers in the document, with why)."""
    name = esc(doc.filename)
    if not doc.pictures and all(loss == "vision" for _, loss in doc.pictures_left_out):
        return (
            f"🖼 Картинки из «{name}» я пропустил: выбранная модель изображений не видит. "
            "Модель получит только текст документа. Сменить модель: /model."
        )
    reasons: dict[PictureLoss, list[int]] = {}
    for picture, loss in doc.pictures_left_out:
        reasons.setdefault(loss, []).append(picture)
    lines = []
    for loss, numbers in reasons.items():
        what = "картинка" if len(numbers) == 1 else "картинки"
        lines.append(f"{what} {page_ranges(tuple(numbers)).replace('-', '–')} — {_PICTURE_LOSSES[loss]}")
    seen = (
        f"Модель увидит {number(len(doc.pictures))} {of_total(doc.picture_count, 'картинки', 'картинок')}"
        if doc.pictures
        else "Модель получит только текст"
    )
    return f"🖼 Не все картинки из «{name}» дойдут до модели: " + "; ".join(lines) + f". {seen}."


def document_cut(doc: ExtractedDocument) -> str:
    """Told before the answer when only part of a document goes to the model: it was too long for the model's
    context or for the text one request may carry, or the reading of a PDF stopped (the page cap, the time it took,
    pages that could not be read)."""
    name = esc(doc.filename)
    read = len(doc.text)
    if doc.total_chars is None and doc.pages_read is not None and doc.pages_total is not None:
        first = "с первой" if doc.pages_read == 1 else f"с первых {number(doc.pages_read)}"
        part = f"{chars(read)} {first} {of_total(doc.pages_total, 'страницы', 'страниц')}"
    elif doc.total_chars is not None:
        part = f"первые {number(read)} {of_total(doc.total_chars, 'символа', 'символов')}"
    else:
        part = f"первые {chars(read)}"
    why = {
        "pages": f"больше {pages(doc.pages_read or 0)} за раз я не читаю",
        "cap": f"больше {chars(MAX_DOCUMENTS_CHARS)} за раз я не читаю",
        "time": "чтение заняло слишком много времени",
        "unreadable": "многие страницы прочитать не получилось",
    }.get(doc.stopped_by or "")
    if why:
        return f"✂️ «{name}» я прочитал не целиком: {why}. Модель прочитает {part}."
    return f"✂️ «{name}» не помещается в контекст модели целиком: она прочитает {part}."


_SKIPPED: dict[str, str] = {
    "video": "🎬 Видео из присланного я пропустил: видео я пока не смотрю.",
    "audio": "🎧 Аудио из присланного я пропустил: аудио я пока не слушаю.",
    "vision": "🖼 Картинки из присланного я пропустил: выбранная модель изображений не видит. Сменить модель: /model.",
    "other": "🧩 Стикеры, опросы, геопозиции и другие такие сообщения из присланного я пропустил: их я не понимаю.",
}


def skipped_parts(kinds: Iterable[str | None]) -> str:
    """Told before the answer when parts of an album or of messages forwarded together (videos, voice messages,
    stickers...: ``attachments.unreadable_kind``) were left out and the rest goes on."""
    lines = [
        _SKIPPED.get(kind or "", "Часть присланного я пропустил: такие файлы я не читаю.")
        for kind in dict.fromkeys(kinds)
    ]
    return "\n".join(lines) + "\nОтвечаю на остальное."


def files_forgotten(names: Sequence[str]) -> str:
    """Told after an answer once files the person sent no longer fit the model's context beside the conversation
    (``Reply.forgotten_files``): the model no longer sees them."""
    quoted = ", ".join(f"«{esc(name)}»" for name in names)
    if len(names) == 1:
        what = f"Файл {quoted} больше не помещается в контекст модели вместе с перепиской, и модель его уже не видит"
        again = "Чтобы спросить о нём, пришлите его снова"
    else:
        what = f"Файлы {quoted} больше не помещаются в контекст модели вместе с перепиской, и модель их уже не видит"
        again = "Чтобы спросить о них, пришлите их снова"
    return f"ℹ️ {what}. {again} или очистите контекст: /delete_context."
