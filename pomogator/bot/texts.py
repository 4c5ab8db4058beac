"""Everything the bot says, in Russian, as Telegram HTML.

Every value that comes from a user, a file or the catalog passes through ``esc`` before it is put into HTML.
What the bot says about photos and files is in ``pomogator.bot.files_texts``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

# Dates and times are shown as /billing shows them: in the configured zone, with its label ("MSK").
from pomogator.billing import texts as billing_texts
from pomogator.billing.texts import when
from pomogator.bot import files_texts
from pomogator.errors import (
    BillingError,
    DatabaseUnavailable,
    FileError,
    FormUnavailable,
    LLMAccountProblem,
    LLMBadRequest,
    LLMEmptyAnswer,
    LLMError,
    LLMModelGone,
    LLMModerated,
    LLMNoRoomToAnswer,
    LLMRateLimited,
    LLMRegionBlocked,
    LLMTimeout,
    LLMUnavailable,
    MessageTooLong,
    PaymentProviderUnavailable,
    PaymentRejected,
    PaymentStatusUnknown,
    PaymentUnderReview,
    PomogatorError,
    PremiumRequired,
    QuotaExceeded,
    RoleTooLong,
    ScanTooLong,
    UnknownModel,
    VisionUnsupported,
)
from pomogator.llm.catalog import Catalog, Model
from pomogator.services.formatting.plural import plural
from pomogator.services.formatting.text import escape_attr as esc_attr
from pomogator.services.formatting.text import escape_text as esc
from pomogator.services.users import Account, ModelReset, Profile

DESCRIPTION_LIMIT = 512
SHORT_DESCRIPTION_LIMIT = 120
# How much of a long role the profile and the role prompt show.
ROLE_PREVIEW_CHARS = 300


# --- Bot profile: commands and descriptions ------------------------------------------------------------------

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "Начало работы и меню"),
    ("help", "Как пользоваться ботом"),
    ("stop", "Остановить ответ, пока он пишется"),
    ("model", "Выбрать модель"),
    ("role", "Задать роль для модели"),
    ("profile", "Профиль и лимиты на сегодня"),
    ("billing", "Премиум: тарифы и оплата"),
    ("delete_context", "Очистить контекст беседы"),
    ("delete_me", "Удалить мои данные"),
)


def bot_description(support: str) -> str:
    """The text an empty chat with the bot shows (at most 512 characters)."""
    text = (
        "Помогатор — нейросети GPT, Gemini, Claude, DeepSeek, Llama и другие в одном чате.\n\n"
        "Задавайте вопросы обычными сообщениями: бот помнит контекст беседы, а модель и её роль можно выбрать. "
        "Каждый день доступны бесплатные запросы, с премиумом — больше запросов и самые сильные модели."
    )
    contact = f"\n\nПоддержка: {support}" if support.strip() else ""
    return text + contact if len(text) + len(contact) <= DESCRIPTION_LIMIT else text


def bot_short_description(support: str) -> str:
    """The bot's profile line (at most 120 characters)."""
    text = "GPT, Gemini, Claude и другие нейросети в одном чате."
    contact = f" Поддержка: {support}" if support.strip() else ""
    return text + contact if len(text) + len(contact) <= SHORT_DESCRIPTION_LIMIT else text


# --- /start and /help ------------------------------------------------------------------------------------------


def start(first_name: str, model: Model, offer_url: str = "", privacy_url: str = "") -> str:
    name = f", {esc(first_name)}" if first_name.strip() else ""
    links = [
        f'<a href="{esc_attr(url)}">{title}</a>'
        for url, title in ((offer_url, "Оферта"), (privacy_url, "Политика конфиденциальности"))
        if url
    ]
    documents = f"\n\n{' · '.join(links)}" if links else ""
    return (
        f"👋 Привет{name}! Я Помогатор — собеседник с доступом к разным нейросетям в одном чате.\n\n"
        "Просто напишите вопрос — ответит выбранная модель с учётом роли и истории беседы. "
        "Можно прислать фото или документ (PDF, DOCX, текст, код) с вопросом в подписи.\n\n"
        f"Сейчас выбрана модель <b>{esc(model.title)}</b>. Меню — кнопками ниже, справка — /help."
        f"{documents}"
    )


def zone_label(tz: ZoneInfo) -> str:
    """The zone as ``when`` shows it and people read it: "MSK", not "Europe/Moscow"."""
    return f"{datetime.now(tz):%Z}"


def help_text(support: str, tz: ZoneInfo) -> str:
    contact = f"\n\nПоддержка: {esc(support)}" if support.strip() else ""
    return (
        "<b>Как пользоваться Помогатором</b>\n\n"
        "Напишите сообщение — его получит выбранная модель вместе с ролью и историей беседы. "
        # Private chats stream a draft with Telegram's own stop control; only where drafts are refused does the
        # answer carry the bot's «⏹ Стоп» button. So the help does not name a button.
        "Ответ появляется по мере написания; пока он пишется, его можно остановить — "
        "уже написанное сохранится.\n\n"
        "Фото и документы (PDF, DOCX, TXT, Markdown, CSV, JSON, код) можно присылать с вопросом в подписи: "
        f"фото видят модели с поддержкой изображений (в /model они отмечены {MODEL_VISION_MARK}), "
        "текст документа модель получает целиком или "
        "столько, сколько помещается.\n\n"
        "Альбом, длинный текст, который Telegram разбил на части, и сообщения, пересланные вместе, — "
        "один запрос: модель получит их сразу.\n\n"
        "<b>Команды</b>\n"
        "/start — начало работы и меню\n"
        "/model — выбрать модель; у каждой свой дневной лимит запросов\n"
        "/role — задать роль: кем быть модели и как отвечать; можно сразу: /role Ты — опытный юрист\n"
        "/profile — модель, роль, запросы за сегодня, премиум\n"
        "/billing — премиум: больше запросов и сильные модели, разовой оплатой\n"
        "/delete_context — очистить контекст: следующий вопрос модель получит без истории\n"
        "/delete_me — удалить все мои данные\n"
        "/stop — остановить ответ, пока он пишется\n"
        "/help — эта справка\n\n"
        f"Лимиты запросов обновляются каждый день в полночь ({esc(zone_label(tz))}). "
        "Если модель не смогла ответить, запрос не засчитывается."
        f"{contact}"
    )


MENU_MODEL = "🤖 Модель"
MENU_ROLE = "🎭 Роль"
MENU_PROFILE = "👤 Профиль"
MENU_BILLING = "💎 Премиум"
MENU_HELP = "❓ Помощь"
MENU_DELETE_CONTEXT = "🧹 Очистить контекст"

# --- /model ----------------------------------------------------------------------------------------------------

MODEL_CURRENT_MARK = "✅"
MODEL_LOCKED_MARK = "🔒"
MODEL_VISION_MARK = "🖼"
MODEL_EXIT = "✖️ Закрыть"


def _limits(model: Model) -> str:
    free = "только премиум" if model.premium_only else str(model.free_daily)
    return f"{free} / {model.premium_daily}"


def model_menu(catalog: Catalog, account: Account, *, premium_on_sale: bool) -> str:
    """The models with their daily limits; 🖼 marks those that see images, 🔒 (for a free user only) those that need
    premium."""
    locks = not account.premium
    lines = [
        "<b>Выберите модель</b>",
        "",
        f"Сейчас: <b>{esc(account.model.title)}</b>",
        "",
        "Запросов в день — бесплатно / с премиумом:",
    ]
    for model in catalog.models:
        vision = f" {MODEL_VISION_MARK}" if model.vision else ""
        lock = f" {MODEL_LOCKED_MARK}" if locks and model.premium_only else ""
        lines.append(f"• {esc(model.title)}{vision}{lock} — {_limits(model)}")
    legend = []
    if any(m.vision for m in catalog.models):
        legend.append(f"{MODEL_VISION_MARK} — видит изображения")
    if locks and any(m.premium_only for m in catalog.models):
        # Without payments premium is given by the admins: it is not "coming soon" to someone who had it.
        legend.append(f"{MODEL_LOCKED_MARK} — только с премиумом" + (": /billing" if premium_on_sale else ""))
    if legend:
        lines += ["", *legend]
    return "\n".join(lines)


def model_button(model: Model, *, current: bool, locked: bool) -> str:
    if current:
        return f"{MODEL_CURRENT_MARK} {model.title}"
    if locked:
        return f"{MODEL_LOCKED_MARK} {model.title}"
    return model.title


def model_chosen(model: Model) -> str:
    return f"Модель: {model.title}"


def model_locked(model: Model, *, premium_on_sale: bool) -> str:
    """The alert over the models menu when a free user picks a premium-only model (plain text, not HTML). A command
    in an alert cannot be tapped: the menu has the premium button (``make_model_keyboard``)."""
    further = f"Оформить — кнопка «{MENU_BILLING}» под списком." if premium_on_sale else "Премиум скоро появится."
    return f"{MODEL_LOCKED_MARK} {model.title} — только с премиумом. {further}"


MODEL_MENU_CLOSED = "Меню закрыто"


def model_reset(account: Account, *, premium_on_sale: bool) -> str:
    """Why the person's model was just switched to the default (``account.model``), told once (``UserService.touch``).
    ``premium_on_sale``: premium can be bought, so the notice points to /billing where premium would help."""
    default = f"<b>{esc(account.model.title)}</b>"
    if account.model_reset == ModelReset.GONE:
        return f"ℹ️ Модели, которую вы выбирали, больше нет в списке, поэтому выбрана {default}. Сменить: /model"
    if account.model_reset == ModelReset.PREMIUM_ONLY and account.reset_from is not None:
        buy = " Оформить премиум: /billing" if premium_on_sale else ""
        return (
            f"ℹ️ Модель <b>{esc(account.reset_from.title)}</b> теперь доступна только с премиумом, "
            f"поэтому выбрана {default}.{buy}"
        )
    again = " Вернуть премиум-модели: /billing" if premium_on_sale else ""
    return f"ℹ️ Премиум закончился, поэтому модель переключена на {default}.{again}"


# --- /role -----------------------------------------------------------------------------------------------------

ROLE_CANCEL = "Отмена"
ROLE_DELETE = "🗑 Удалить роль"


def role_preview(role: str) -> str:
    """The start of a long role: a message quoting all of one can exceed Telegram's 4,096 characters."""
    return role if len(role) <= ROLE_PREVIEW_CHARS else role[:ROLE_PREVIEW_CHARS] + "…"


def role_prompt(role: str | None, limit: int) -> str:
    current = f"<blockquote>{esc(role_preview(role))}</blockquote>" if role else "не задана\n"
    chars = plural(limit, "символа", "символов", "символов")
    return (
        "<b>Роль</b> — это инструкция для модели: кем ей быть и как отвечать. "
        "Например: «Ты — опытный юрист, отвечай кратко и по делу».\n\n"
        f"Текущая роль: {current}\n"
        f"Отправьте новую роль следующим сообщением (до {limit} {chars})."
    )


ROLE_SAVED = "✅ Роль сохранена. Модель будет следовать ей в следующих ответах."
ROLE_UNCHANGED = "Роль не изменена."
ROLE_DELETED = "🗑 Роль удалена."
ROLE_NOT_TEXT = "Отправьте роль текстом или нажмите «Отмена»."
ROLE_PROMPT_OUTDATED = "Это сообщение устарело, роль не изменена. Изменить роль — /role"
# In place of the prompt when another command or button ended the form (``pomogator.bot.middlewares.forms``).
ROLE_INPUT_CLOSED = "Ввод роли отменён, роль не изменена. Задать роль — /role"


def role_too_long(length: int, limit: int) -> str:
    return (
        f"Роль слишком длинная: {length} {plural(length, 'символ', 'символа', 'символов')}, "
        f"а можно не больше {limit}. "
        "Сократите её и отправьте ещё раз или нажмите «Отмена»."
    )


# --- /profile --------------------------------------------------------------------------------------------------


def profile(data: Profile, tz: ZoneInfo, *, premium_on_sale: bool) -> str:
    account = data.account
    role_line = f"<blockquote>{esc(role_preview(account.role))}</blockquote>" if account.role else "не задана (/role)\n"
    current = data.current
    if account.premium_until is not None:
        premium = f"активен до {when(account.premium_until, tz)}"
    else:
        premium = "нет — оформить: /billing" if premium_on_sale else "нет"
    return (
        "<b>👤 Профиль</b>\n\n"
        f"Модель: <b>{esc(account.model.title)}</b> (/model)\n"
        f"Роль: {role_line}\n"
        f"Запросов сегодня: {data.requests_today}\n"
        f"Осталось для текущей модели: {current.remaining} из {current.limit}\n"
        f"Премиум: {premium}"
    )


# --- /delete_context, /delete_me, /billing ------------------------------------------------------------------------

CONTEXT_CLEARED = "🧹 Контекст очищен. Следующее сообщение модель получит без истории беседы."


def delete_me_prompt(premium_until: datetime | None, tz: ZoneInfo) -> str:
    premium = (
        f"⚠️ Ваш премиум до {premium_until.astimezone(tz):%d.%m.%Y} пропадёт, "
        "а оплаченные дни не возвращаются: деньги за них не возмещаются.\n\n"
        if premium_until is not None
        else ""
    )
    return (
        "Удалить все ваши данные: историю бесед, роль, выбранную модель, статистику запросов и премиум?\n\n"
        f"{premium}"
        "Это нельзя отменить. Лимиты запросов на сегодня не обнулятся: счётчик за сегодня удалится в полночь."
    )


DELETE_ME_CONFIRM = "Да, удалить всё"
DELETE_ME_CANCEL = "Отмена"
DELETE_ME_DONE = "Ваши данные удалены. Чтобы начать заново, отправьте /start."
# True whatever another prompt did meanwhile: this press erased nothing.
DELETE_ME_CANCELLED = "Хорошо, ничего не удаляю."
DELETE_ME_EXPIRED = "Этот запрос на удаление устарел. Подтвердите, пожалуйста, ещё раз — ниже."
DELETE_ME_OUTDATED = "Этот запрос на удаление устарел: данные уже удалены. Чтобы начать заново, отправьте /start."
# A message sent before the erasure that waited for its turn meanwhile: not handled, or it would bring the account
# and its dialog back right after DELETE_ME_DONE.
DELETE_ME_EARLIER_MESSAGE = (
    "Это сообщение отправлено до удаления ваших данных, поэтому оно не обработано. Если нужно, отправьте его ещё раз."
)


def billing_soon(support: str, *, premium_until: datetime | None, tz: ZoneInfo) -> str:
    """/billing while payments are not configured: premium is given by the admins, so one who has it is told until
    when, and that support extends it."""
    if premium_until is not None:
        extend = f" Продлить его можно через поддержку: {esc(support)}" if support.strip() else ""
        return (
            f"💎 <b>Премиум активен до {when(premium_until, tz)}</b>\n\n"
            f"С ним больше запросов в день и доступ к самым сильным моделям.{extend}"
        )
    questions = f" Вопросы: {esc(support)}" if support.strip() else ""
    return (
        "💎 <b>Премиум скоро появится</b>\n\n"
        "С ним будет больше запросов в день и доступ к самым сильным моделям. "
        f"Пока что пользуйтесь бесплатными лимитами.{questions}"
    )


# --- Answers -------------------------------------------------------------------------------------------------------

STOP_BUTTON = "⏹ Стоп"
STOPPING = "Останавливаю…"
ALREADY_FINISHED = "Ответ уже готов"
STOPPED_MARK = "⏹ <i>Ответ остановлен</i>"
BROKEN_OFF_MARK = "⚠️ <i>Ответ оборвался из-за сбоя модели и в историю беседы не попал.</i>"
STOPPED_EMPTY = "⏹ Ответ остановлен до того, как модель начала писать. Запрос не засчитан."
EMPTY_ANSWER = "Модель вернула пустой ответ. Попробуйте переформулировать вопрос."
UNKNOWN_COMMAND = "Такой команды нет. Список команд — /help"
NOTHING_TO_STOP = "Сейчас ничего не пишется — останавливать нечего."
NOTHING_TO_CANCEL = "Сейчас нечего отменять. Остановить ответ, пока он пишется, — /stop"
NOT_TEXT = f"Голосовые, стикеры, видео и геометки я пока не понимаю. {files_texts.ACCEPTED}"
FLOOD = "🐢 Слишком много сообщений. Подождите минуту: то, что вы отправите сейчас, я пропущу (кроме /stop)."
PRESSES_FLOOD = "🐢 Слишком часто. Подождите минуту: нажатия сейчас я пропущу."


def private_only(bot_username: str | None) -> str:
    where = f" @{esc(bot_username)}" if bot_username else ""
    return f"Я работаю только в личных сообщениях. Напишите мне напрямую{where}."


# --- Errors ----------------------------------------------------------------------------------------------------

NOT_COUNTED = "Запрос не засчитан."
# The refusals that name models to choose, marked premium-only for a free user: ``error`` needs to know which it is.
NAMES_MODELS = (MessageTooLong, VisionUnsupported, ScanTooLong)


def quota_exceeded(exc: QuotaExceeded, catalog: Catalog, tz: ZoneInfo, *, premium_on_sale: bool) -> str:
    model = catalog.find(exc.model_id)
    title = model.title if model else exc.model_id
    requests = plural(exc.limit, "запрос", "запроса", "запросов")
    # Premium is offered only when it raises this limit: never to a premium user (whose limit is already the
    # premium one), nor for a model whose premium limit is no higher, nor while it cannot be bought.
    premium_helps = premium_on_sale and model is not None and model.premium_daily > exc.limit
    further = " — или оформить премиум с большими лимитами — /billing" if premium_helps else "."
    return (
        f"⏳ Дневной лимит для модели <b>{esc(title)}</b> исчерпан: {exc.limit} {requests} в день. "
        f"Лимит обновится {when(exc.resets_at, tz)}.\n\n"
        f"Можно выбрать другую модель — /model{further}"
    )


def premium_required(exc: PremiumRequired, catalog: Catalog, *, premium_on_sale: bool) -> str:
    model = catalog.find(exc.model_id)
    title = model.title if model else exc.model_id
    further = "Оформить премиум: /billing" if premium_on_sale else "Премиум скоро появится."
    return f"{MODEL_LOCKED_MARK} Модель <b>{esc(title)}</b> доступна только с премиумом.\n\n{further}"


def _models_to_choose(models: list[Model], *, premium: bool) -> str:
    """Models a refusal names as a way out. Free ones first: a free user who picks a premium-only one would only be
    refused again; for such a user, premium-only ones are marked (a premium user has them all)."""
    ordered = sorted(models, key=lambda m: m.premium_only)
    locks = not premium and any(m.premium_only for m in ordered)
    names = ", ".join(esc(m.title) + (f" {MODEL_LOCKED_MARK}" if locks and m.premium_only else "") for m in ordered)
    return names + (f" ({MODEL_LOCKED_MARK} — только с премиумом)" if locks else "")


def vision_unsupported(exc: VisionUnsupported, catalog: Catalog, *, premium: bool = False) -> str:
    model = catalog.find(exc.model_id)
    title = model.title if model else exc.model_id
    names = _models_to_choose(catalog.vision_models(), premium=premium)
    return f"Модель <b>{esc(title)}</b> не видит изображения. Их понимают: {names}. Сменить модель: /model"


LLM_UNAVAILABLE = f"😔 Модель сейчас недоступна. Попробуйте чуть позже или выберите другую: /model. {NOT_COUNTED}"
# Our OpenRouter account (key, credit, limits, privacy settings) fails every model at once: no model to switch to.
LLM_ACCOUNT_PROBLEM = f"😔 Сервис временно недоступен, мы уже чиним. Попробуйте позже. {NOT_COUNTED}"
LLM_RATE_LIMITED = (
    f"🚦 Модель перегружена запросами. Попробуйте через минуту или выберите другую: /model. {NOT_COUNTED}"
)
LLM_TIMEOUT = f"⌛ Модель слишком долго отвечала, и запрос прерван. Попробуйте ещё раз. {NOT_COUNTED}"
LLM_MODERATED = (
    f"🚫 Модель отказалась отвечать: запрос не прошёл её модерацию. Попробуйте переформулировать. {NOT_COUNTED}"
)
LLM_BAD_REQUEST = (
    "Модель не смогла обработать этот запрос — возможно, он или история беседы слишком длинные. "
    f"Попробуйте короче или очистите контекст: /delete_context. {NOT_COUNTED}"
)


def message_too_long(exc: MessageTooLong, catalog: Catalog, *, premium: bool = False) -> str:
    """Names the models that would read the message whole (/model shows no lengths); none when no model would."""
    model = catalog.find(exc.model_id)
    title = model.title if model else exc.model_id
    longer = [m for m in catalog.models if m.id != exc.model_id and m.input_tokens >= exc.tokens]
    further = (
        f"Сократите его или выберите модель, которая прочитает его целиком: "
        f"{_models_to_choose(longer, premium=premium)}. Сменить модель: /model."
        if longer
        else "Сократите его."
    )
    return (
        f"📏 Сообщение слишком длинное для модели <b>{esc(title)}</b>: она не сможет прочитать его целиком. "
        f"{further} {NOT_COUNTED}"
    )


def scan_too_long(exc: ScanTooLong, catalog: Catalog, *, premium: bool = False) -> str:
    """Names the models that see files and whose context would hold the scan, where the request's size is known."""
    longer = [m for m in catalog.vision_models() if exc.tokens and m.input_tokens >= exc.tokens]
    way_out = (
        f"выберите модель, которая прочитает его целиком: {_models_to_choose(longer, premium=premium)}. "
        "Сменить модель: /model."
        if longer
        else ""
    )
    return files_texts.scan_too_long(exc, way_out)


CUT_OFF_BY_RESTART = "⚠️ Бот перезапускался и не успел ответить на это сообщение. Пожалуйста, отправьте его ещё раз."
LLM_NO_ROOM = (
    "🤔 Модель потратила весь лимит ответа на размышления и ничего не написала. Сузьте вопрос или выберите другую "
    f"модель: /model. {NOT_COUNTED}"
)
LLM_MODEL_GONE = f"😔 Эта модель больше недоступна у провайдера. Выберите другую: /model. {NOT_COUNTED}"
LLM_REGION_BLOCKED = f"🌍 Эта модель недоступна в стране, где работает бот. Выберите другую: /model. {NOT_COUNTED}"
LLM_EMPTY_ANSWER = f"{EMPTY_ANSWER} {NOT_COUNTED}"
LLM_FAILED = f"Модель не смогла ответить. Попробуйте ещё раз. {NOT_COUNTED}"
UNKNOWN_MODEL = "Этой модели больше нет в списке. Откройте /model заново."
BILLING_UNAVAILABLE = "Оплата сейчас недоступна. Попробуйте чуть позже."


def payment_under_review(support: str) -> str:
    questions = f" Если есть вопросы, напишите в поддержку: {esc(support)}" if support.strip() else ""
    return (
        "🔎 Предыдущий платёж по этому тарифу проверяется: данные платёжной системы не сошлись со счётом, и мы уже "
        f"разбираемся. Платить ещё раз не нужно.{questions}"
    )


def unexpected(support: str) -> str:
    if not support.strip():
        return "Что-то пошло не так. Попробуйте ещё раз чуть позже."
    return (
        "Что-то пошло не так. Попробуйте ещё раз чуть позже; "
        f"если ошибка повторяется, напишите в поддержку: {esc(support)}"
    )


def llm_error(exc: LLMError) -> str:
    # LLMAccountProblem (a subclass of LLMUnavailable) is our key, credit or limits: the admins are alerted.
    if isinstance(exc, LLMAccountProblem):
        return LLM_ACCOUNT_PROBLEM
    if isinstance(exc, LLMUnavailable):
        return LLM_UNAVAILABLE
    if isinstance(exc, LLMRateLimited):
        return LLM_RATE_LIMITED
    if isinstance(exc, LLMTimeout):
        return LLM_TIMEOUT
    if isinstance(exc, LLMModerated):
        return LLM_MODERATED
    if isinstance(exc, LLMBadRequest):
        return LLM_BAD_REQUEST
    if isinstance(exc, LLMModelGone):
        return LLM_MODEL_GONE
    if isinstance(exc, LLMNoRoomToAnswer):
        return LLM_NO_ROOM
    if isinstance(exc, LLMRegionBlocked):
        return LLM_REGION_BLOCKED
    if isinstance(exc, LLMEmptyAnswer):
        return LLM_EMPTY_ANSWER
    return LLM_FAILED


def error(
    exc: PomogatorError,
    catalog: Catalog,
    tz: ZoneInfo,
    support: str,
    *,
    premium_on_sale: bool,
    premium: bool = False,
) -> str:
    """The message a user gets for a domain error. ``premium_on_sale``: premium can be bought (payments are
    configured), so refusals that premium would lift point to /billing. ``premium``: the user has it, so the models
    a refusal names are not marked premium-only (read only for ``NAMES_MODELS``)."""
    if isinstance(exc, QuotaExceeded):
        return quota_exceeded(exc, catalog, tz, premium_on_sale=premium_on_sale)
    if isinstance(exc, PremiumRequired):
        return premium_required(exc, catalog, premium_on_sale=premium_on_sale)
    if isinstance(exc, MessageTooLong):
        return message_too_long(exc, catalog, premium=premium)
    if isinstance(exc, RoleTooLong):
        return role_too_long(exc.length, exc.limit)
    if isinstance(exc, VisionUnsupported):
        return vision_unsupported(exc, catalog, premium=premium)
    if isinstance(exc, LLMError):
        return llm_error(exc)
    if isinstance(exc, ScanTooLong):
        return scan_too_long(exc, catalog, premium=premium)
    if isinstance(exc, FileError):
        return files_texts.file_error(exc)
    if isinstance(exc, UnknownModel):
        return UNKNOWN_MODEL
    if isinstance(exc, PaymentUnderReview):
        return payment_under_review(support)  # admins are told
    if isinstance(exc, PaymentStatusUnknown):
        return billing_texts.PAYMENT_STATUS_UNKNOWN  # the link handed out before may have been paid
    if isinstance(exc, PaymentRejected):
        return billing_texts.PAYMENT_REJECTED  # admins are alerted
    if isinstance(exc, PaymentProviderUnavailable):
        return billing_texts.PROVIDER_UNAVAILABLE
    if isinstance(exc, BillingError):
        return BILLING_UNAVAILABLE
    if isinstance(exc, FormUnavailable):
        return FORM_UNAVAILABLE
    if isinstance(exc, DatabaseUnavailable):
        return DATABASE_UNAVAILABLE
    return unexpected(support)


# Messages of kinds no handler takes (a forwarded story, a checklist, a game...), and edits of sent messages.
NOT_SUPPORTED = f"Такие сообщения я пока не понимаю. {files_texts.ACCEPTED}"
EDITS_NOT_SEEN = (
    "✏️ Изменения в уже отправленных сообщениях я не вижу. Если нужно, отправьте исправленный текст новым сообщением."
)

# The end of an answer the model's content filter stopped, and of one its length limit cut off.
FILTERED_MARK = "🚫 <i>Ответ прерван: его остановил фильтр содержимого модели.</i>"
CUT_OFF_MARK = "✂️ <i>Ответ оборван: модель упёрлась в лимит длины. Напишите «продолжай», и она допишет.</i>"

# The database could not be reached (pomogator.store.outage): to open a form, to handle a message.
FORM_UNAVAILABLE = (
    "⚠️ Сейчас не получается открыть эту форму: у нас временные технические неполадки. Попробуйте через пару "
    "минут — всё остальное работает как обычно."
)
DATABASE_UNAVAILABLE = (
    "⚠️ Сейчас не получается обработать сообщение: у нас временные технические неполадки. "
    "Отправьте его ещё раз через пару минут."
)
# The same during a button press: there is no message to send again.
DATABASE_UNAVAILABLE_PRESS = (
    "⚠️ Сейчас не получается выполнить это действие: у нас временные технические неполадки. "
    "Нажмите кнопку ещё раз через пару минут."
)
UNSAVED_MARK = (
    "⚠️ <i>Этот ответ не сохранился в истории беседы из-за технических неполадок: "
    "в следующих сообщениях модель его не увидит.</i>"
)

# Telegram's flood limit outlasted what the bot waits for one message (pomogator.bot.flood_wait).
FLOOD_LIMITED = (
    "⏳ Telegram временно ограничил, как часто бот может отправлять сообщения, и ответ не удалось доставить. "
    "Попробуйте ещё раз через несколько минут."
)
# Telegram could not be reached, or answered with a server error, while the answer was sent (it costs nothing).
TELEGRAM_UNAVAILABLE = (
    "📡 Telegram сейчас недоступен, и ответ не удалось доставить. Подождите немного и отправьте сообщение ещё раз."
)
