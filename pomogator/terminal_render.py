"""Showing a model's streamed Markdown answer in a terminal (``pomogator chat``).

Finished Markdown blocks are printed for good as soon as the next block starts; only the open, still growing block
is redrawn, at most ``REFRESH_PER_SECOND`` times a second however long a drawing takes, and only as much of it as
fills the screen. Redrawing the whole answer for every token was quadratic (6000 tokens took 12 s of CPU), and once
the answer was taller than the screen rich's Live showed "..." until the end.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment

from pomogator.services.formatting.bare_urls import bare_urls_plugin
from pomogator.services.formatting.emphasis import emphasis_plugin
from pomogator.services.formatting.footnotes import footnotes_plugin
from pomogator.services.formatting.math import math_plugin

REFRESH_PER_SECOND = 8

# C0 controls but \t and \n, DEL, and the C1 controls (U+0080-U+009F; some terminals read U+009B as CSI).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# rich's own rules (CommonMark, strikethrough, tables) without HTML: rich shows no HTML, so with these rules on,
# "Vec<String>" lost "<String>" and a "<div>" line disappeared. As in the bot: formulas become code, bare addresses
# and "*" between letters or digits ("2*3*4", "x**2") are no emphasis, link reference definitions ("[1]: …", a
# list of sources) are shown as written, and numbered footnotes ("[^1]") become superscripts.
PARSER = (
    MarkdownIt()
    .enable("strikethrough")
    .enable("table")
    .disable(["html_inline", "html_block", "reference"])
    .use(math_plugin)
    .use(bare_urls_plugin)
    .use(emphasis_plugin)
    .use(footnotes_plugin)
)
LISTS = ("bullet_list_open", "ordered_list_open")


def clean(text: str) -> str:
    """``text`` without control characters other than newlines and tabs: a model's escape sequences would reach the
    operator's terminal (colours, the window title, cursor moves)."""
    return CONTROL_CHARACTERS.sub("", text)


def answer_console() -> Console:
    """A console of the chat's own for answers on standard output. Not ``cli_output.console()``: that one
    soft-wraps (whole lines, for copying), and a Live display on a soft-wrapping console cuts every line at the
    terminal's width."""
    return Console(highlight=False)


class ChatMarkdown(Markdown):
    """rich's Markdown with anything that looks like HTML shown as text, and a line break in a paragraph kept, as
    the bot keeps it (models break lines of addresses, verses and steps with single newlines; rich joins them)."""

    def __init__(self, markup: str, **options: Any) -> None:
        super().__init__("", **options)
        self.markup = markup
        self.parsed = PARSER.parse(markup)
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"


def _top_level_blocks(tokens: list[Token]) -> list[int]:
    """The indexes of the tokens that open (or are) a block of the document itself."""
    return [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map is not None]


def _line_offset(text: str, line: int) -> int:
    """Where line ``line`` (0-based, lines end with "\\n" as markdown-it counts them) starts in ``text``."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


class Cut(NamedTuple):
    """Where the finished part of a text ends, and how the rest follows it."""

    end: int
    gap: bool = False
    """The last finished block is one that rich puts a blank line after."""
    inside_list: bool = False
    """The rest goes on with the items of the finished part's last list."""


def finished_part(text: str) -> Cut:
    """How much of ``text`` no later text can change: whole blocks (a code fence only once closed), whole items
    of a list. A block is finished once the next one has started on a complete line; an item once the next item
    has. The end is 0 while the first block is open."""
    complete = text[: text.rfind("\n") + 1]
    if not complete:
        return Cut(0)
    tokens = PARSER.parse(complete)
    blocks = _top_level_blocks(tokens)
    if not blocks:
        return Cut(0)
    last = tokens[blocks[-1]]
    if last.type in LISTS:
        items = [t for t in tokens[blocks[-1] :] if t.type == "list_item_open" and t.level == 1]
        if len(items) > 1 and items[-1].map is not None:
            return Cut(_line_offset(complete, items[-1].map[0]), inside_list=True)
    if len(blocks) == 1 or last.map is None:
        return Cut(0)
    # rich puts a blank line before a block when the element before it says so (a rule ends with its own).
    gap = getattr(Markdown.elements.get(tokens[blocks[-2]].type), "new_line", True)
    return Cut(_line_offset(complete, last.map[0]), gap=bool(gap))


class _Part:
    """A part of an answer, rendered as it shows within the whole answer.

    rich starts a list or a quote with a blank line of its own (its separator from the block before), and a
    paragraph, heading or code block with none: ``gap`` adds it there when the block before wants one, and
    ``inside_list`` drops it before the rest of a list, whose items follow each other directly.
    """

    def __init__(self, markdown: ChatMarkdown, *, gap: bool, inside_list: bool) -> None:
        self.markdown = markdown
        self.gap = gap
        self.inside_list = inside_list

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        segments = iter(console.render(self.markdown, options))
        first = next(segments, None)
        if first is None:
            return
        if first == Segment.line():
            if self.inside_list:
                first = next(segments, None)
        elif self.gap:
            yield Segment.line()
        if first is not None:
            yield first
        yield from segments


class _Tail:
    """The last lines of a renderable that fit the screen: a block taller than the screen shows where it grows."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        # One line is left for the cursor: a display as tall as the screen scrolls.
        for line in lines[-max(options.size.height - 1, 1) :]:
            yield from line
            yield Segment.line()


def _source_tail(text: str, lines: int) -> str:
    """The end of ``text``, an open block, that is enough to fill ``lines`` lines of the screen: its last ``lines``
    lines, after the lines that make the block what it is (a code fence's first line, a table's header), so the
    tail shows as the block does. Rendering all of a long block for every redraw cost seconds."""
    every = text.splitlines(keepends=True)
    if len(every) <= lines:
        return text
    tokens = PARSER.parse("".join(every[:2]))
    kept = {"fence": 1, "table_open": 2}.get(tokens[0].type, 0) if tokens else 0
    return "".join(every[:kept] + every[max(kept, len(every) - lines) :])


class AnswerView:
    """A streamed answer on ``console``: ``add`` its pieces inside ``with``; leaving shows all of it.

    ``interval`` is the least time between two redraws; ``clock`` is for tests.
    """

    def __init__(
        self,
        console: Console,
        *,
        interval: float = 1 / REFRESH_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.interval = interval
        self.clock = clock
        self._open = ""  # the text not printed for good yet
        self._after = Cut(0)  # how the open text follows the part printed
        self._changed = False
        self._next_show = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # Transient: the preview goes when the answer ends, and the rest is printed for good like the parts before.
        self._live = Live(console=console, auto_refresh=False, transient=True)

    def __enter__(self) -> AnswerView:
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def add(self, piece: str) -> None:
        text = clean(piece)
        if not text:
            return
        self._open += text
        self._changed = True
        wait = self._next_show - self.clock()
        if wait <= 0:
            self.show()
        elif self._timer is None:
            # Otherwise a piece followed by a pause would stay unseen until the next one.
            self._timer = asyncio.get_running_loop().call_later(wait, self.show)

    def show(self) -> None:
        """Print the finished blocks and redraw the open one."""
        self._cancel_timer()
        if not self._changed:
            return
        self._changed = False
        start = self.clock()
        cut = finished_part(self._open)
        if cut.end:
            done, self._open = self._open[: cut.end], self._open[cut.end :]
            self.console.print(self._part(done))
            self._after = cut
        self._live.update(_Tail(self._part(_source_tail(self._open, self.console.height))), refresh=True)
        # From the end of this drawing, and longer when drawing is slow: once it took longer than the interval,
        # every piece drew again, and a long code block streamed several times slower than the model.
        end = self.clock()
        self._next_show = end + max(self.interval, 2 * (end - start))

    def close(self) -> None:
        """End the preview and print the open text, however tall."""
        self._cancel_timer()
        self._live.update("")
        self._live.stop()
        self.console.print(self._part(self._open))

    def _part(self, text: str) -> _Part:
        return _Part(ChatMarkdown(text), gap=self._after.gap, inside_list=self._after.inside_list)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
