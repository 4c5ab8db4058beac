"""Turning LLM Markdown into Telegram HTML messages that Telegram accepts."""

from pomogator.services.formatting.markdown import markdown_to_html, shows_nothing
from pomogator.services.formatting.split import render_answer, render_answer_ending, split_html
from pomogator.services.formatting.text import escape_attr, escape_text, html_to_text, utf16_len

__all__ = [
    "escape_attr",
    "escape_text",
    "html_to_text",
    "markdown_to_html",
    "render_answer",
    "render_answer_ending",
    "shows_nothing",
    "split_html",
    "utf16_len",
]
