"""Trying to break the ``masa`` command the way a user would: generated arguments, environment
values, settings files, event files and keystores, run in-process through ``main()``.

Whatever is thrown at it, a command exits 0 with its result or prints one ``error:`` line with
the documented exit code (docs/operator-guide.md, "Exit codes"); there is never a traceback,
never an "unexpected" error, and ``events send`` sends everything or nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from indexer.events import make_event
from indexer.events.fields import format_timestamp
from masa.app.cli import app, main
from masa.app.settings import Settings, settings_reference
from masa.app.wiring import open_bus

CODES = {0, 1, 2, 75}
ERROR_LINE = re.compile(r"^masa( [\w-]+)*: error: \S")
ACCOUNT = Account.from_key(b"\x07" * 32)
OTHER = Account.from_key(b"\x08" * 32)
PASSWORD = "correct horse"
FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def masa(
    args: Sequence[str], cwd: Path, env: dict[str, str | None] | None = None, stdin: bytes = b""
) -> Result:
    """``masa ARGS`` through ``main()``, in this process, in ``cwd``."""
    old_argv, old_cwd = sys.argv, os.getcwd()
    code: int | str | None = None
    with CliRunner().isolation(
        input=stdin, env={"MASA_HOME": str(cwd / "home"), **(env or {})}
    ) as (
        out,
        err,
        _,
    ):
        sys.argv = ["masa", *args]
        os.chdir(cwd)
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
            logging.getLogger().handlers.clear()
        result = Result(code if isinstance(code, int) else 0, _text(out), _text(err))
    return result


def _text(stream: object) -> str:
    return stream.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


def assert_one_clear_outcome(result: Result, codes: set[int] = CODES) -> None:
    """Exit 0, or one error line last on stderr with a documented code; no traceback."""
    assert "Traceback" not in result.output, result.output
    assert result.code in codes, result
    if result.code != 0:
        lines = result.stderr.strip().splitlines()
        assert lines and ERROR_LINE.match(lines[-1]), result.stderr
        assert sum(": error: " in line for line in lines) == 1, result.stderr
        assert ": error: unexpected " not in lines[-1], result.stderr  # a bug, not a failure


# --- arguments ------------------------------------------------------------------------------

COMMANDS = [
    ["config", "show"],
    ["config", "show", "--json"],
    ["config", "reference"],
    ["events", "schema"],
    ["events", "held"],
    ["events", "send"],
    ["events", "tail"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["store", "stats"],
    ["keys", "show"],
    ["keys", "import"],
    ["node", "status"],
    ["oracle", "balance"],
    ["oracle", "deposit"],
    ["contracts", "mint"],
    ["index"],
    ["nonsense"],
    [],
]
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
TOKENS = st.sampled_from(
    ["--json", "--limit", "--since", "--reason", "--id", "--all", "--dry-run", "--for",
     "--key-file", "--to", "--amount", "-n", "--last", "--topic", "--role", "--out", "-",
     "worker", "indexer", "1e999", "nan", "inf", "-1", "0", "2h", "99999999999999999999",
     "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045", "not-a-uuid", "--force", "--follow"]
) | _TEXT  # fmt: skip
ROOT = st.sampled_from(
    [[], ["--home", "elsewhere"], ["--log-level", "nope"], ["--log-level", "debug"],
     ["--config", "missing.toml"], ["--config", "."]]
)  # fmt: skip


@FAST
@given(root=ROOT, command=st.sampled_from(COMMANDS), extra=st.lists(TOKENS, max_size=4))
def test_no_argument_list_gives_a_traceback(tmp_path, root, command, extra):
    if "--follow" in extra and command == ["events", "tail"]:
        extra = [t for t in extra if t != "--follow"]  # runs until Ctrl-C, by design
    assert_one_clear_outcome(masa([*root, *command, *extra], tmp_path))


def test_usage_errors_are_exit_2_and_no_arguments_is_the_help(tmp_path):
    assert masa([], tmp_path).code == 0
    assert "Usage" in masa(["dlq"], tmp_path).stdout
    for args in (["nonsense"], ["dlq", "list", "--limit", "x"], ["ingest", "--until-idle", "0"]):
        result = masa(args, tmp_path)
        assert result.code == 2 and "--help" in result.stderr, result


def _commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


def test_every_command_help_has_examples(tmp_path):
    from masa.app.cli import commands  # noqa: F401  (registers the sub-commands)

    paths = list(_commands(typer.main.get_command(app)))
    assert len(paths) >= 20
    for path in paths:
        result = masa([*path, "--help"], tmp_path)
        assert result.code == 0, (path, result)
        assert "Examples:" in result.stdout and "masa " in result.stdout.split("Examples:")[1], path


# --- environment ----------------------------------------------------------------------------

SETTING_VARS = re.findall(r"`(MASA_[A-Z0-9_]+)`", settings_reference())


def _typo(name: str, data: st.DataObject) -> str:
    body = name.removeprefix("MASA_")
    at = data.draw(st.integers(0, len(body) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap"]))
    if kind == "drop":
        body = body[:at] + body[at + 1 :]
    elif kind == "double":
        body = body[:at] + body[at] + body[at:]
    elif at + 1 < len(body):
        body = body[:at] + body[at + 1] + body[at] + body[at + 2 :]
    return "MASA_" + body


VALUES = st.one_of(
    _TEXT,
    st.sampled_from(["inf", "-inf", "nan", "1e300", "-1", "0", "", "true", "[]", "{}", "[1]",
                     "99999999999999999999999", "0.5", "postgres", "kafka", '["0x1"]']),
    st.integers().map(str),
    st.floats().map(repr),
)  # fmt: skip


@FAST
@given(data=st.data())
def test_no_environment_gives_a_traceback_and_typos_are_refused(tmp_path, data):
    name = data.draw(st.sampled_from(SETTING_VARS))
    typo = data.draw(st.booleans())
    if typo:
        name = _typo(name, data)
    value = data.draw(VALUES)
    result = masa(["config", "show", "--json"], tmp_path, env={name: value})
    assert_one_clear_outcome(result, {0, 2})
    if result.code == 0:
        shown = json.loads(result.stdout)
        assert isinstance(shown, dict)
    known = name in SETTING_VARS or name.upper() in SETTING_VARS
    if "__" in name and not known:
        assert result.code == 2 and "unknown setting" in result.stderr, (name, result)
    if result.code == 2:
        assert name in result.stderr or "MASA_" in result.stderr, result.stderr


def test_a_typo_in_a_nested_setting_no_longer_leaves_the_default(tmp_path):
    result = masa(["config", "show"], tmp_path, env={"MASA_STORE__BACKNED": "postgres"})
    assert result.code == 2
    assert "MASA_STORE__BACKNED" in result.stderr and "MASA_STORE__BACKEND" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MASA_INGEST__HOLD_TIMEOUT_S", "inf"),
        ("MASA_INGEST__HOLD_TIMEOUT_S", "1e300"),
        ("MASA_CHAIN__POLL_INTERVAL_S", "nan"),
        ("MASA_BUS__PARTITIONS", "99999999999999999999"),
        ("MASA_CHAIN__START_BLOCK", str(2**64)),
        ("MASA_STORE__POSTGRES_PORT", "70000"),
        ("MASA_CONFIG", "/nowhere/masa.toml"),
        ("MASA_HOEM", "x"),
    ],
)
def test_values_no_command_could_use_are_refused_at_load_time(tmp_path, variable, value):
    result = masa(["config", "show"], tmp_path, env={variable: value})
    assert result.code == 2 and variable in result.stderr, result
    assert_one_clear_outcome(result)


# --- settings files -------------------------------------------------------------------------

SECTIONS = {
    name: list(field.annotation.model_fields)  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
    if hasattr(field.annotation, "model_fields")
}
TOML_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(lambda f: {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(f), repr(f))),
    _TEXT.map(json.dumps),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.sampled_from(['"postgres"', '"kafka"', "[]", '["a"]', "{}", "1e300"]),
)
KEY = st.sampled_from(sorted({k for keys in SECTIONS.values() for k in keys})) | st.from_regex(
    r"\A[a-z_]{1,12}\Z"
)


@st.composite
def toml_files(draw: st.DrawFn) -> tuple[str, bool]:
    """A TOML text and whether every key in it is a known setting."""
    lines, known = [], True
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "stor", "extra"]), max_size=3)):
        lines.append(f"[{section}]")
        known &= section in SECTIONS
        for key in draw(st.lists(KEY, max_size=3, unique=True)):
            known &= key in SECTIONS.get(section, [])
            lines.append(f"{key} = {draw(TOML_VALUES)}")
    return "\n".join(lines) + "\n", known


@FAST
@given(file=toml_files() | st.tuples(_TEXT, st.just(False)))
def test_no_settings_file_gives_a_traceback_and_unknown_keys_are_refused(tmp_path, file):
    text, known = file
    path = tmp_path / "masa.toml"
    path.write_text(text, encoding="utf-8")
    result = masa(["--config", str(path), "config", "show", "--json"], tmp_path)
    assert_one_clear_outcome(result, {0, 2})
    if not known and "[" in text and "=" in text and result.code == 0:
        pytest.fail(f"unknown keys accepted:\n{text}")
    if result.code == 2:
        assert "masa.toml" in result.stderr or "MASA_" in result.stderr, result.stderr


@FAST
@given(raw=st.binary(max_size=200))
def test_a_settings_file_of_any_bytes_is_one_line(tmp_path, raw):
    (tmp_path / "masa.toml").write_bytes(raw)
    assert_one_clear_outcome(masa(["config", "show"], tmp_path), {0, 2})


def test_a_toml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "masa.toml").write_text('[store]\nbackend = "sqlite"\nbroken = \n')
    result = masa(["config", "show"], tmp_path)
    assert result.code == 2 and "masa.toml:3" in result.stderr, result


# --- events send ----------------------------------------------------------------------------

FUTURE = format_timestamp(datetime.now(UTC) + timedelta(days=30))


def _registration(signer=ACCOUNT, contributor=None, source=None, **extra) -> bytes:  # type: ignore[no-untyped-def]
    payload = {
        "source": source or f"https://{uuid.uuid4().hex}.example/",
        "contributor": (contributor or signer).address.lower(),
    }
    return make_event(signer, "DataSourceRegistered", payload, **extra).value


def _request(fee: object) -> bytes:
    message = json.loads(
        make_event(
            ACCOUNT,
            "RequestSubmitted",
            {
                "request_id": str(uuid.uuid4()),
                "kind": "data",
                "spec": {"start_urls": ["https://example.org/"], "fields": {"t": {"css": "h1"}}},
                "fee": "1000",
            },
        ).value
    )
    message["payload"]["fee"] = fee
    return json.dumps(message).encode()


def _failure_text(text: str) -> bytes:
    """A valid signed event whose JSON holds ``text`` (U+2028, U+0085...) unescaped."""
    event = make_event(
        ACCOUNT, "RequestFailed", {"request_id": str(uuid.uuid4()), "reason": "x", "detail": text}
    )
    return json.dumps(json.loads(event.value), ensure_ascii=False).encode()


#: line kind -> (bytes of one such line, whether events send must refuse it)
LINES = {
    "valid": (lambda: _registration(), False),
    "crlf": (lambda: _registration() + b"\r", False),
    "line separators": (lambda: _failure_text("a\u2028b\u0085c\u2029d"), False),
    "blank": (lambda: b"   ", False),
    "fee as a number": (lambda: _request(1000), True),
    "bad json": (lambda: b'{"type": "Heartbeat", ', True),
    "not utf-8": (lambda: b'{"type": "\xff\xfe"}', True),
    "unknown type": (lambda: b'{"type": "Nope", "payload": {}}', True),
    "future": (lambda: _registration(occurred_at=datetime.now(UTC) + timedelta(days=30)), True),
    "contributor is not the signer": (lambda: _registration(contributor=OTHER), True),
    "too large": (
        lambda: _registration().replace(b"{", b'{"pad":"' + b"x" * 300_000 + b'",', 1),
        True,
    ),
    "bad signature": (
        lambda: _registration().replace(b'"signature":"0x', b'"signature":"0x0'),
        True,
    ),
    "array": (lambda: b"[1, 2]", True),
}


def _bus_records(home: Path) -> int:
    bus = open_bus(Settings(home=home))
    return sum(bus.end_offsets(Settings().bus.events_topic).values())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(sorted(LINES)), min_size=1, max_size=30))
def test_events_send_sends_all_or_names_every_bad_line(tmp_path, kinds):
    lines = [LINES[kind][0]() for kind in kinds]
    bad = [n for n, kind in enumerate(kinds, 1) if LINES[kind][1]]
    meant = sum(kind != "blank" for kind in kinds)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    before = _bus_records(tmp_path / "home")
    result = masa(["events", "send", "events.jsonl", "--json"], tmp_path)
    assert_one_clear_outcome(result, {0, 2})
    sent = _bus_records(tmp_path / "home") - before
    if bad:
        assert result.code == 2 and sent == 0, result
        reported = [int(n) for n in re.findall(r"^line (\d+): \S", result.stderr, re.M)]
        assert reported == bad[:20], result.stderr
        if len(bad) > 20:
            assert f"and {len(bad) - 20} more" in result.stderr
    elif meant:
        assert result.code == 0, result
        assert json.loads(result.stdout)["sent"] == sent == meant
    else:
        assert result.code == 2 and sent == 0


def test_what_events_send_accepts_ingest_stores_and_nothing_is_lost(tmp_path):
    lines = [_registration() for _ in range(15)] + [_failure_text("x\u2028y") for _ in range(3)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines))
    assert masa(["events", "send", "events.jsonl"], tmp_path).code == 0
    ingested = masa(["ingest", "--until-idle", "1", "--json"], tmp_path)
    assert ingested.code == 0, ingested
    stats = json.loads(masa(["store", "stats", "--json"], tmp_path).stdout)
    assert stats["dead_letters"] == 0, stats  # a failure for an unknown request is held
    assert stats["events"] + stats["held"] == len(lines), stats
    assert stats["by_type"] == {"DataSourceRegistered.v1": 15}


def test_each_bad_line_names_its_field_and_reason(tmp_path):
    lines = [_request(5), _registration(contributor=OTHER), b'{"type": "Nope"}']
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines))
    result = masa(["events", "send", "events.jsonl"], tmp_path)
    assert result.code == 2
    assert "line 1: payload.fee: amount must be a decimal string" in result.stderr
    assert "line 2: payload.contributor:" in result.stderr and "not_contributor" in result.stderr
    assert "line 3: type: unknown event type 'Nope'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("nothing was sent")


# --- keystores ------------------------------------------------------------------------------


def _keystore(path: Path, **crypto_changes: object) -> Path:
    keystore = Account.encrypt(ACCOUNT.key, PASSWORD, iterations=2**4)
    keystore["crypto"] |= crypto_changes
    path.write_text(json.dumps(keystore))
    return path


KEYSTORE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(
    damage=st.one_of(
        st.binary(max_size=100).map(lambda b: ("bytes", b)),
        KEYSTORE_JSON.map(lambda v: ("json", v)),
        st.dictionaries(
            st.sampled_from(["cipher", "ciphertext", "kdf", "kdfparams", "mac", "cipherparams"]),
            KEYSTORE_JSON,
            max_size=2,
        ).map(lambda v: ("crypto", v)),
    )
)
def test_a_damaged_keystore_is_one_line(tmp_path, damage):
    kind, value = damage
    path = tmp_path / "key.json"
    if kind == "bytes":
        path.write_bytes(value)
    elif kind == "json":
        path.write_text(json.dumps(value))
    else:
        _keystore(path, **value)
    (tmp_path / "one.jsonl").write_text('{"type": "Heartbeat", "payload": {"seq": 1}}\n')
    env = {"MASA_KEY_PASSWORD": PASSWORD}
    for args in (
        ["keys", "show", str(path)],
        ["events", "send", "one.jsonl", "--key-file", str(path)],
    ):
        assert_one_clear_outcome(masa(args, tmp_path, env=env), {0, 2})


def test_a_hostile_key_derivation_cost_is_refused_before_deriving(tmp_path):
    path = _keystore(tmp_path / "key.json")
    keystore = json.loads(path.read_text())
    keystore["crypto"]["kdfparams"]["c"] = 2**40
    path.write_text(json.dumps(keystore))
    (tmp_path / "one.jsonl").write_text('{"type": "Heartbeat", "payload": {"seq": 1}}\n')
    result = masa(
        ["events", "send", "one.jsonl", "--key-file", str(path)],
        tmp_path,
        env={"MASA_KEY_PASSWORD": PASSWORD},
    )
    assert result.code == 2 and "key derivation cost" in result.stderr, result


def test_keys_new_refuses_an_empty_password_and_import_writes_where_index_looks(tmp_path):
    empty = masa(["keys", "new"], tmp_path, env={"MASA_KEY_PASSWORD": ""})
    assert empty.code == 2 and "empty password" in empty.stderr
    imported = masa(
        ["keys", "import", "-", "--for", "indexer", "--json"],
        tmp_path,
        env={"MASA_KEY_PASSWORD": PASSWORD},
        stdin=("0x" + ACCOUNT.key.hex().removeprefix("0x") + "\n").encode(),
    )
    assert imported.code == 0, imported
    shown = json.loads(imported.stdout)
    assert shown["address"] == ACCOUNT.address
    assert Path(shown["path"]) == tmp_path / "home" / "keys" / "indexer.json"
    again = masa(["keys", "show", "--for", "indexer"], tmp_path)
    assert again.code == 0 and ACCOUNT.address in again.stdout
    for bad in (b"", b"0x1234", b"zz" * 32):
        result = masa(
            ["keys", "import", "-", "--out", "k.json"],
            tmp_path,
            env={"MASA_KEY_PASSWORD": PASSWORD},
            stdin=bad,
        )
        assert result.code == 2 and "64 hex digits" in result.stderr, result


@pytest.mark.parametrize("amount", ["1e999", "nan", "inf", "-1", "1e-19", "", "1e60"])
def test_an_amount_no_token_can_hold_is_one_line(tmp_path, amount):
    result = masa(
        ["contracts", "mint", "--to", ACCOUNT.address, "--amount", amount, "--key-file", "k"],
        tmp_path,
    )
    assert result.code == 2, result
    assert_one_clear_outcome(result)


# --- dead letters ---------------------------------------------------------------------------


def _dead_letters(tmp_path: Path, count: int) -> None:
    bus = open_bus(Settings(home=tmp_path / "home"))
    producer = bus.producer()
    for n in range(count):
        producer.send(Settings().bus.events_topic, f"Key-{n}".encode(), _registration())
    producer.flush()
    producer.close()
    assert masa(["ingest", "--until-idle", "1"], tmp_path).code == 0


def test_dlq_list_shows_whole_ids_event_ids_and_keys_with_a_limit(tmp_path):
    _dead_letters(tmp_path, 7)
    listed = json.loads(masa(["dlq", "list", "--json", "--limit", "0"], tmp_path).stdout)
    assert len(listed) == 7
    assert {row["reason"] for row in listed} == {"wrong_key"}
    assert all(uuid.UUID(row["event_id"]) and row["key"].startswith("Key-") for row in listed)
    assert len(json.loads(masa(["dlq", "list", "--json", "--limit", "3"], tmp_path).stdout)) == 3
    assert masa(["dlq", "list", "--json", "--reason", "bad_json"], tmp_path).stdout.strip() == "[]"
    assert len(json.loads(masa(["dlq", "list", "--json", "--since", "1h"], tmp_path).stdout)) == 7
    assert masa(["dlq", "list", "--since", "yesterday"], tmp_path).code == 2
    table = masa(["dlq", "list"], tmp_path).stdout
    for row in listed:  # every id whole on its letter's line, copyable
        assert any(row["id"] in line and row["event_id"] in line for line in table.splitlines())
    stats = json.loads(masa(["store", "stats", "--json"], tmp_path).stdout)
    assert stats["dead_letters_by_reason"] == {"wrong_key": 7}
