"""Billing texts in Russian, plain (no parse mode), shared by the bot's /billing and the web app's notices.

They live outside ``pomogator.bot`` because the web process sends some of them and must not import aiogram.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from pomogator.services.formatting.plural import plural

PLAN_TITLES = {"month": "Месяц", "year": "Год"}
PLAN_GENITIVE = {"month": "месяц", "year": "год"}

CANCELLATION_REASONS = {
    "3d_secure_failed": "не пройдена проверка 3-D Secure: подтвердите оплату кодом из банка или позвоните в банк",
    "call_issuer": "банк отклонил платёж: позвоните в банк, выпустивший карту",
    "canceled_by_merchant": "платёж отменён магазином",
    "card_expired": "у карты истёк срок действия",
    "country_forbidden": "карты банка этой страны не принимаются",
    "deal_expired": "истёк срок сделки",
    "expired_on_capture": "истёк срок подтверждения платежа",
    "expired_on_confirmation": "время на оплату истекло, оплата не была завершена",
    "fraud_suspected": "платёж заблокирован: платёжная система заподозрила мошенничество",
    "general_decline": "банк отклонил платёж без объяснения причин: попробуйте другую карту или позвоните в банк",
    "identification_required": "превышен лимит неидентифицированного кошелька ЮMoney",
    "insufficient_funds": "на карте недостаточно денег",
    "internal_timeout": "технический сбой платёжной системы",
    "invalid_card_number": "неверный номер карты",
    "invalid_csc": "неверный код CVC/CVV",
    "issuer_unavailable": "банк, выпустивший карту, не отвечает",
    "payment_method_limit_exceeded": "превышен лимит платежей этим способом",
    "payment_method_restricted": "платежи этим способом запрещены банком или платёжной системой",
    "permission_revoked": "разрешение на списание отозвано",
    "unsupported_mobile_operator": "оплата со счёта этого мобильного оператора недоступна",
}
UNKNOWN_CANCELLATION = "платёж не прошёл"


def rubles(amount: Decimal) -> str:
    """599 → "599 ₽", 199.5 → "199,50 ₽"."""
    if amount == amount.to_integral_value():
        return f"{int(amount)} ₽"
    return f"{amount.quantize(Decimal('0.01'))} ₽".replace(".", ",")


def when(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local:%d.%m.%Y %H:%M} {local:%Z}".strip()


def plan_title(plan: str) -> str:
    return PLAN_TITLES.get(plan, plan)


def cancellation_reason(reason: str | None) -> str:
    return CANCELLATION_REASONS.get(reason or "", UNKNOWN_CANCELLATION)


# --- /billing ------------------------------------------------------------------------------------------------


def plan_button(plan: str, price: Decimal) -> str:
    return f"{plan_title(plan)} — {rubles(price)}"


CHANGE_EMAIL_BUTTON = "✉️ Изменить e-mail для чеков"


def billing_screen(
    *,
    premium_until: datetime | None,
    plans: Sequence[tuple[str, Decimal, int]],
    tz: ZoneInfo,
    offer_url: str,
    privacy_url: str,
    email: str | None,
    receipts: bool,
) -> str:
    status = f"Премиум активен до {when(premium_until, tz)}." if premium_until else "Сейчас у вас бесплатный тариф."
    lines = [
        "💎 Премиум",
        "",
        status,
        "",
        "Премиум даёт повышенные дневные лимиты и модели с 🔒.",
        "",
        "Тарифы:",
    ]
    lines += [
        f"• {plan_title(name)} — {rubles(price)} ({days} {plural(days, 'день', 'дня', 'дней')})"
        for name, price, days in plans
    ]
    lines += [
        "",
        "Это разовый платёж без автопродления: деньги спишутся один раз, карта не сохраняется. "
        "Если премиум уже есть, новый срок добавится к текущему.",
    ]
    if receipts:
        lines.append(f"Чек придёт на {email}." if email else "Для чека понадобится e-mail.")
    documents = ["Оплачивая, вы принимаете условия оферты.", f"Оферта: {offer_url}"] if offer_url else []
    if privacy_url:
        documents.append(f"Политика конфиденциальности: {privacy_url}")
    if documents:
        lines += ["", *documents]
    return "\n".join(lines)


def checkout(plan: str, amount: Decimal, url: str, *, reused: bool, also_pending: Sequence[str] = ()) -> str:
    first = "Счёт уже создан" if reused else "Счёт создан"
    text = (
        f"{first}: премиум на {PLAN_GENITIVE.get(plan, plan)}, {rubles(amount)}.\n\n"
        f"Оплатить: {url}\n\n"
        "Ссылка действует ограниченное время. Когда оплата пройдёт, я пришлю подтверждение."
    )
    others = [PLAN_GENITIVE.get(other, other) for other in also_pending]
    if others:
        which = " и на ".join(others)
        text += (
            f"\n\n⚠️ Выставленный раньше счёт на {which} тоже действует. Оплатите только один, "
            "если не хотите купить оба срока: оплаченные сроки складываются."
        )
    return text


def already_paid(premium_until: datetime | None, tz: ZoneInfo) -> str:
    text = "✅ Этот счёт уже оплачен, оплата получена — новый счёт не нужен."
    return f"{text} Премиум активен до {when(premium_until, tz)}." if premium_until else text


def pay_button(amount: Decimal) -> str:
    return f"Оплатить {rubles(amount)}"


# The toast a plan's button shows at once: the invoice comes when YooKassa has answered.
CREATING_INVOICE = "Создаю счёт…"
PROVIDER_UNAVAILABLE = "Платёжная система сейчас не отвечает. Деньги не списаны — попробуйте через несколько минут."
PAYMENT_REJECTED = "Платёжная система не приняла запрос. Мы уже разбираемся; попробуйте позже."
PAYMENT_STATUS_UNKNOWN = (
    "Платёжная система сейчас не отвечает, и не получилось проверить, оплачен ли выставленный раньше счёт. "
    "Если вы его уже оплатили, платить ещё раз не нужно: премиум включится сам, и я пришлю подтверждение. "
    "Если нет — попробуйте через несколько минут."
)
EMAIL_PROMPT = (
    "Для оплаты нужен e-mail: по закону на него придёт кассовый чек. Напишите адрес одним сообщением "
    "(или /cancel, чтобы отменить)."
)
EMAIL_CHANGE_PROMPT = "Напишите новый e-mail для кассовых чеков одним сообщением (или /cancel, чтобы оставить прежний)."
EMAIL_INVALID = "Это не похоже на e-mail. Напишите адрес вида name@example.ru или /cancel."
EMAIL_CANCELED = "Хорошо, e-mail не изменён."
EMAIL_FORM_CLOSED = "Этот запрос e-mail уже закрыт, отменять нечего. Тарифы и e-mail для чеков: /billing"
# In place of the e-mail prompt when another command or button ended its form: on the way to paying, and not.
PURCHASE_INPUT_CLOSED = "Ввод e-mail отменён, счёт не создан, деньги не списаны. Вернуться к тарифам: /billing"
EMAIL_INPUT_CLOSED = "Ввод e-mail отменён, e-mail для чеков не изменён. Изменить его: /billing"


def email_refused(email: str) -> str:
    address = f"e-mail {email}" if email else "e-mail"
    return (
        f"Платёжная система не приняла {address} для кассового чека — возможно, в адресе опечатка. Деньги не "
        "списаны. Напишите адрес ещё раз одним сообщением (или /cancel, чтобы отменить)."
    )


PURCHASE_CANCELED = "Оплата отменена, деньги не списаны. Вернуться к тарифам: /billing"


def email_saved(email: str, *, paying: bool) -> str:
    if paying:
        return f"E-mail для чеков сохранён: {email}. Создаю счёт…"
    return f"E-mail для чеков сохранён: {email}. Выбрать тариф: /billing"


# --- notices sent by whichever process applies a payment -------------------------------------------------------


def payment_succeeded(plan: str, amount: Decimal, until: datetime, tz: ZoneInfo) -> str:
    return (
        f"✅ Оплата {rubles(amount)} получена, спасибо!\n"
        f"Премиум на {PLAN_GENITIVE.get(plan, plan)} активен до {when(until, tz)}: "
        "повышенные лимиты и модели с 🔒 уже доступны."
    )


def payment_refunded(amount: Decimal, refunded: Decimal, premium_until: datetime | None, tz: ZoneInfo) -> str:
    """The payer's notice of a payment refunded, in part or in full, by the time we heard it succeeded."""
    after = f"Премиум действует до {when(premium_until, tz)}." if premium_until else "Премиум отключён."
    return (
        f"↩️ Оплата {rubles(amount)} получена, и по ней оформлен возврат {rubles(refunded)}. "
        f"Деньги вернутся на карту в течение нескольких дней. {after}"
    )


def payment_canceled(amount: Decimal, reason: str | None) -> str:
    return (
        f"❌ Платёж на {rubles(amount)} не прошёл: {cancellation_reason(reason)}.\n"
        "Деньги не списаны. Попробовать ещё раз: /billing"
    )


def refund_done(amount: Decimal, premium_until: datetime | None, tz: ZoneInfo) -> str:
    after = f"Премиум действует до {when(premium_until, tz)}." if premium_until else "Премиум отключён."
    return f"↩️ Оформлен возврат {rubles(amount)}. Деньги вернутся на карту в течение нескольких дней. {after}"


def premium_ending(until: datetime, tz: ZoneInfo, *, premium_on_sale: bool, support: str) -> str:
    """``premium_on_sale``: payments are configured; without them premium is given by the admins (and /billing only
    says it is coming), so the person is pointed to ``support``."""
    if not premium_on_sale:
        extend = f" Чтобы продлить его, напишите в поддержку: {support}" if support.strip() else ""
        return f"⏳ Премиум закончится {when(until, tz)}.{extend}"
    return (
        f"⏳ Премиум закончится {when(until, tz)}. Продлить заранее можно в /billing — "
        "новый срок добавится к текущему. Это разовый платёж, без автопродления."
    )


# --- admins --------------------------------------------------------------------------------------------------


def admin_payment(
    payment_id: str, telegram_id: int, plan: str, amount: Decimal, until: datetime | None, tz: ZoneInfo
) -> str:
    after = f"Премиум до {when(until, tz)}." if until else "Премиум отключён."
    return (
        f"💰 Оплата {rubles(amount)} ({plan_title(plan)}) от пользователя {telegram_id}.\nПлатёж {payment_id}. {after}"
    )


def admin_refund(payment_id: str, telegram_id: int | None, amount: Decimal, total: Decimal) -> str:
    who = f"пользователя {telegram_id}" if telegram_id is not None else "удалённого пользователя"
    return f"↩️ Возврат {rubles(amount)} по платежу {payment_id} {who} (всего возвращено {rubles(total)})."


def admin_refund_not_made(refund_id: str, payment_id: str, amount: Decimal) -> str:
    return (
        f"⚠️ Возврат {refund_id} на {rubles(amount)} по платежу {payment_id} отменён YooKassa: деньги не вернулись, "
        "премиум не сокращён."
    )


def admin_unknown_payment(payment_id: str) -> str:
    return (
        f"⚠️ YooKassa не знает платёж {payment_id} (создан с ключами другого магазина?). Он отмечен как неудачный "
        "и больше не проверяется; премиум по нему не выдан."
    )


def admin_not_verified(payment_id: str, problem: str) -> str:
    return f"⚠️ Уведомление YooKassa о платеже {payment_id} не подтвердилось: {problem}. Премиум не выдан."
