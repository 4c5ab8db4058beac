"""Handlers: one router per area, built by its module's ``make_router``.

``get_routers`` builds them anew on each call, in the order an update tries them:

* ``chat`` comes first: plain text outside a form (nearly every update) goes to the model without being checked
  against every command; the late chat router (``chat.make_late_router``) answers unknown commands after the command
  routers had their turn;
* the role input (a state handler) comes before the late chat router, so the text after /role becomes the role;
* ``billing`` answers both /billing and the /start menu's premium button (``MenuAction.billing``);
* ``cancel`` answers /cancel when no form waits, so it comes after the forms' own /cancel handlers (role, billing);
* ``files`` (photos, documents, albums) goes right before ``fallback``, which answers every other kind of message
  (service messages excepted) and edited messages, so it must stay last.

Their synchronous filters (``F.text`` and the like) run on the event loop, not in aiogram's worker threads
(``pomogator.bot.inline_filters``).
"""

from __future__ import annotations

from aiogram import Router

from pomogator.bot.handlers import (
    billing,
    cancel,
    chat,
    context,
    delete_me,
    fallback,
    files,
    model,
    profile,
    role,
    start,
    stop,
)
from pomogator.bot.inline_filters import run_filters_inline


def get_routers() -> list[Router]:
    """Fresh routers with their handlers, for one dispatcher (aiogram attaches a router to one parent only)."""
    routers = [
        chat.make_router(),
        start.make_router(),
        model.make_router(),
        role.make_router(),
        profile.make_router(),
        context.make_router(),
        delete_me.make_router(),
        billing.make_router(),
        stop.make_router(),
        cancel.make_router(),
        chat.make_late_router(),
        files.make_router(),
        fallback.make_router(),
    ]
    run_filters_inline(routers)
    return routers
