"""Domain exceptions raised by services and translated once per frontend.

Every exception carries ``user_message``: a short, safe text (in English, for logs and the CLI); the bot maps
exception types to its own Russian texts in ``pomogator.bot.texts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then the exceptions it was raised from or during, nearest first, as a traceback shows them (a
    context suppressed by ``raise ... from None`` left out)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is other for other in seen):
        seen.append(current)
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


class PomogatorError(Exception):
    """Base class for every error a user may be told about."""

    user_message: str = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        if message:
            self.user_message = message


class ConfigError(PomogatorError):
    """A setting is missing or invalid."""


class CatalogError(ConfigError):
    """The models catalog file is invalid."""


class UnknownModel(PomogatorError):
    def __init__(self, model_id: str, valid: list[str]) -> None:
        self.model_id = model_id
        self.valid = valid
        super().__init__(f"Unknown model {model_id!r}. Valid ids: {', '.join(valid)}")


class UserNotFound(PomogatorError):
    def __init__(self, telegram_id: int) -> None:
        self.telegram_id = telegram_id
        super().__init__(f"User {telegram_id} not found.")


class PremiumRequired(PomogatorError):
    """The model or feature is premium-only and the user is on the free plan."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(f"Model {model_id} is available with premium only.")


class RoleTooLong(PomogatorError):
    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(f"The role is {length} characters long; the limit is {limit}.")


class QuotaExceeded(PomogatorError):
    """Today's request limit for this model is used up."""

    def __init__(self, model_id: str, limit: int, resets_at: datetime) -> None:
        self.model_id = model_id
        self.limit = limit
        self.resets_at = resets_at
        super().__init__(f"Daily limit of {limit} requests for {model_id} is used up.")


class DatabaseUnavailable(PomogatorError):
    """The database could not be reached while serving a request (a restart or failover that outlasted the wait
    for it, a lost connection). Nothing of the request was kept, unless the caller says otherwise."""

    user_message = "The database is temporarily unavailable. Please try again in a minute."

    def __init__(self, detail: str = "") -> None:
        # ``detail`` names the driver's failure: for logs only.
        super().__init__(None)
        self.detail = detail


class FormUnavailable(DatabaseUnavailable):
    """A form (the role, the receipt's e-mail) could not be opened: the store of conversation states (Redis) is
    unavailable. Everything else goes on as usual."""

    user_message = "This form cannot be opened right now. Please try again in a few minutes."


class MessageTooLong(PomogatorError):
    """The new message (with the role) alone takes more of the model's context than it has for a request: no
    history is left to drop, so only a shorter message or a model with a larger context helps. Nothing is sent to
    the model and no request is spent. ``tokens`` is the estimate, ``budget`` what the model takes."""

    def __init__(self, model_id: str, tokens: int, budget: int) -> None:
        self.model_id = model_id
        self.tokens = tokens
        self.budget = budget
        super().__init__(
            f"The message is too long for {model_id}: about {tokens} tokens, and the model takes at most {budget}. "
            "Shorten it or switch to a model with a larger context."
        )


# --- LLM -------------------------------------------------------------------------------------------------


class LLMError(PomogatorError):
    """The model could not answer; no quota is spent."""

    user_message = "The model could not answer. Please try again later."

    # The model the request was for, when the client knows it: for logs and alerts.
    model_id: str = ""

    def __init__(self, detail: str = "") -> None:
        # ``detail`` is the provider's own text: for logs and alerts only, never shown to users.
        super().__init__(None)
        self.detail = detail


class LLMUnavailable(LLMError):
    """OpenRouter is down or overloaded (5xx), the connection failed, or it refused in a way not known here."""

    user_message = "The model is temporarily unavailable. Please try again later."


class LLMAccountProblem(LLMUnavailable):
    """OpenRouter refused our account: the key or credit (401/402), the key's spend limit (403 "Key limit exceeded"),
    the day's allowance of free models (429 "free-models-per-day"), privacy settings that leave a model no provider
    (404 "No endpoints found matching your data policy"). Users see "unavailable", admins get an alert."""


class LLMRateLimited(LLMError):
    user_message = "The model is overloaded right now. Please try again in a minute."


class LLMTimeout(LLMError):
    user_message = "The model took too long to answer. Please try again."


class LLMModerated(LLMError):
    """The model's moderation flagged the request (OpenRouter's 403 with the flagged input and reasons), or its
    content filter ended the answer before a word."""

    user_message = "The request was refused by the model's moderation."


class LLMBadRequest(LLMError):
    user_message = "The model could not process this request."


class LLMNoRoomToAnswer(LLMError):
    """The model used its whole answer limit before writing a word (a reasoning model thinking at length)."""

    user_message = "The model used up its answer limit before writing anything. Ask more narrowly or choose another."


class LLMModelGone(LLMError):
    """OpenRouter no longer serves the model (withdrawn, renamed): users are sent to /model, admins alerted to
    change the catalog."""

    user_message = "This model is no longer available. Choose another one."


class LLMRegionBlocked(LLMError):
    """The model is refused in the country the bot's requests come from (OpenRouter's "This model is not available
    in your region", a provider's "unsupported_country_region_territory"): users are sent to /model, admins alerted
    to replace the model or route the requests through another country."""

    user_message = "This model is not available in the server's region. Choose another one."


class LLMEmptyAnswer(LLMError):
    """The model finished without writing anything to show (a silent refusal, or only reasoning): asking again
    differently may help, waiting does not."""

    user_message = "The model returned an empty answer. Try rephrasing the question."


# --- Files -----------------------------------------------------------------------------------------------


class FileError(PomogatorError):
    user_message = "This file cannot be read."


class FileTooLarge(FileError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"The file is {size} bytes; the limit is {limit}.")


class TooManyFiles(FileError):
    """One request carries more photos and files than ``limit`` (messages forwarded together may)."""

    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(f"{count} photos and files in one request; the limit is {limit}.")


class UnsupportedFile(FileError):
    def __init__(self, filename: str, kind: str | None = None) -> None:
        self.filename = filename
        self.kind = kind
        super().__init__(f"Files like {filename!r} are not supported.")


class CorruptFile(FileError):
    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"The file {filename!r} is damaged and cannot be read.")


class EncryptedFile(FileError):
    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"The file {filename!r} is password-protected.")


class FileTooComplex(FileError):
    """Reading the file ran into the reader's time or memory limit (a crafted PDF, or a huge document)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"The file {filename!r} is too complex to read within the limits.")


class ScanTooLong(FileError):
    """A PDF without a text layer, which the model reads page by page itself, has more pages than its context
    holds. ``max_pages`` is how many would fit (0: not even one, next to the rest of the request); ``tokens`` is
    what the request needs of a model's context (0: not worked out), so that models that would read it can be named."""

    def __init__(self, filename: str, pages: int, max_pages: int, tokens: int = 0) -> None:
        self.filename = filename
        self.pages = pages
        self.max_pages = max_pages
        self.tokens = tokens
        super().__init__(f"The scan {filename!r} has {pages} pages; the model's context holds {max_pages}.")


class EmptyFile(FileError):
    """A file with no text in it (blank, or a PDF without pages): nothing to ask the model about."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"The file {filename!r} is empty.")


class DownloadFailed(FileError):
    """The file could not be downloaded from Telegram (a network error, a timeout, or Telegram not handing it over
    at the moment): sending it again may work."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"The file {filename!r} could not be downloaded.")


class NamedFileTooLarge(FileTooLarge):
    """FileTooLarge of one file whose name is known (one of several in an album, say)."""

    def __init__(self, filename: str, size: int, limit: int) -> None:
        self.filename = filename
        super().__init__(size, limit)


class UnpackedTooLarge(NamedFileTooLarge):
    """A DOCX whose parts that are read whole (styles, relationships, page headers) unpack to more than ``limit``
    bytes; the file itself may be small."""


class ScanTooLarge(NamedFileTooLarge):
    """A PDF without a text layer, which goes to the model whole, takes more than ``limit`` bytes: more than one
    scan may, or more than is left of the request's media budget beside its other scans and images."""


class VisionUnsupported(PomogatorError):
    def __init__(self, model_id: str, vision_models: list[str]) -> None:
        self.model_id = model_id
        self.vision_models = vision_models
        super().__init__(f"Model {model_id} cannot see images. Models that can: {', '.join(vision_models)}")


# --- Billing ---------------------------------------------------------------------------------------------


class BillingError(PomogatorError):
    user_message = "Payments are temporarily unavailable. Please try again later."


class PaymentProviderUnavailable(BillingError):
    """YooKassa could not be reached or answered with an error."""


class PaymentRejected(PaymentProviderUnavailable):
    """YooKassa answered and refused the request (400/401/403): sending it again unchanged will not help."""


class IdempotenceConflict(PaymentRejected):
    """YooKassa refused a request whose idempotence key an earlier request with other details used: that earlier
    request may have been carried out (or still be on its way), so the key must not be forgotten."""


class PaymentStatusUnknown(PaymentProviderUnavailable):
    """A plan was pressed again and YooKassa could not say whether the link handed out before was paid: the person
    may have paid it, so they are not told that no money was taken, nor offered a second link."""


class PaymentNotVerified(BillingError):
    """A notification did not match what the payment API says."""

    user_message = "The payment could not be verified."


class PaymentUnderReview(BillingError):
    """A plan was pressed again while the person's payment for it waits for the admins: YooKassa reports it paid in
    a way that does not match our record (``PaymentNotVerified``), so a new link could be paid a second time."""

    user_message = "An earlier payment for this plan is being checked."

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id
        super().__init__(f"Payment {payment_id} for this plan is being checked; do not pay again.")


class PaymentNotFound(BillingError):
    user_message = "Payment not found."


class EmailRequired(BillingError):
    user_message = "An email address is needed for the receipt."


class RefundEmailRequired(BillingError):
    """Receipts are on and no address for the refund's receipt is known (the person has none, or erased their data)."""


class InvalidEmail(BillingError):
    user_message = "This does not look like an email address."


class PaymentAlreadyMade(BillingError):
    """The payment a plan button would offer again has been paid meanwhile (its notification had not come yet):
    premium is active, and a new payment would charge the person a second time."""

    user_message = "This payment is already made."

    def __init__(self, payment_id: str, premium_until: datetime | None) -> None:
        self.payment_id = payment_id
        self.premium_until = premium_until
        super().__init__(f"Payment {payment_id} is already made.")


# --- Images ----------------------------------------------------------------------------------------------


class ImageTooLarge(FileError):
    """An image has more pixels than the bot decodes: a decompression bomb, or a giant scan or panorama.
    ``limit`` is in pixels; ``dimensions`` (width, height) when known."""

    def __init__(self, filename: str, limit: int, dimensions: tuple[int, int] | None = None) -> None:
        self.filename = filename
        self.limit = limit
        self.dimensions = dimensions
        size = f" ({dimensions[0]}x{dimensions[1]} pixels)" if dimensions else ""
        super().__init__(f"The image {filename!r} is too large{size}; the limit is {limit} pixels.")


class ImagesTooLarge(FileTooLarge):
    """The images of one request (an album, messages forwarded together) take more than ``limit`` bytes together,
    even after shrinking."""

    def __init__(self, size: int, limit: int, count: int) -> None:
        self.count = count
        super().__init__(size, limit)
        self.user_message = f"The {count} images are {size} bytes together; the limit is {limit}."
        self.args = (self.user_message,)
