"""docs/operator-guide.md as a test reads it: its ``sh`` blocks (the steps, in order) and its
failure-mode table (what an operator sees, compared with what the commands print).

A step is one command line of a block: continuation lines joined, comments dropped, a
trailing ``&`` meaning "started in the background" (a supervisor in production).
``<placeholder>`` names a value an earlier step printed (``<indexer address>``). In the table's
"what you see" cell, a quoted part is a pattern of the output (``…`` standing for anything)
unless it names a setting, a reason or a command (``retry_budget_s``, ``not_staked``,
``masa ingest``); ``exit N`` names the exit codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operator-guide.md"

_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
_PLACEHOLDER = re.compile(r"<([a-z][a-z ]*)>")
_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")
_COMMAND = re.compile(r"masa [a-z]")


@dataclass(frozen=True)
class Step:
    block: int
    text: str  # the command as written, without its comment or a trailing &
    comment: str
    background: bool

    @property
    def placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.text)

    def filled(self, values: dict[str, str]) -> str:
        missing = [name for name in self.placeholders if name not in values]
        assert not missing, f"no earlier step gave {missing} for: {self.text}"
        return _PLACEHOLDER.sub(lambda m: values[m[1]], self.text)


def guide_text() -> str:
    return GUIDE.read_text()


def steps(text: str | None = None) -> list[Step]:
    """Every command of every ``sh`` block, in the order written."""
    found: list[Step] = []
    for number, block in enumerate(_BLOCK.findall(text or guide_text())):
        for line in block.replace("\\\n", " ").splitlines():
            command, comment = split_comment(line)
            if not command:
                continue
            background = command.endswith("&") and not command.endswith("&&")
            command = command.removesuffix("&").rstrip() if background else command
            found.append(Step(number, command, comment, background))
    return found


def split_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: the comment starts at a ``#`` outside quotes that begins a
    word, as the shell reads it."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1 :].strip()
    return line.strip(), ""


@dataclass(frozen=True)
class Row:
    what: str
    seen: str
    todo: str

    @property
    def patterns(self) -> list[str]:
        """The quoted parts of "what you see" that are output, not names."""
        quoted = re.findall(r"`([^`]+)`", self.seen)
        return [q for q in quoted if not (_NAME.fullmatch(q) or _COMMAND.match(q))]

    @property
    def exit_codes(self) -> set[int]:
        return {int(code) for code in re.findall(r"\bexit (\d+)", self.seen)}


def failure_rows(text: str | None = None) -> dict[str, Row]:
    """The rows of the "Failure modes" table, by their first cell."""
    section = (text or guide_text()).split("## Failure modes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 3 or cells[0] in ("what happens", "---|---|---") or "---" in cells[0]:
            continue
        rows[cells[0]] = Row(*cells)
    return rows


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``… retrying in …s`` as a regular expression (``…`` is anything on the line)."""
    parts = [re.escape(part.strip(" ") if part.strip() else part) for part in pattern.split("…")]
    return re.compile(".*".join(parts))


@dataclass
class Seen:
    """What one provocation of a row produced: each command's output and exit code."""

    outputs: list[str]
    codes: set[int]


def assert_matches_row(row: Row, seen: Seen) -> None:
    """Every pattern of the row is in some output; the exit codes are the documented ones."""
    lines = [line for output in seen.outputs for line in output.splitlines()]
    for pattern in row.patterns:
        regex = pattern_regex(pattern)
        assert any(regex.search(line) for line in lines), (
            f"{row.what!r}: the guide says {pattern!r}; nothing printed it:\n"
            + "\n".join(seen.outputs)[-4000:]
        )
    assert seen.codes == row.exit_codes, (
        f"{row.what!r}: the guide says exit {sorted(row.exit_codes)}, seen {sorted(seen.codes)}"
    )
    for output in seen.outputs:
        assert "Traceback" not in output, output[-4000:]
