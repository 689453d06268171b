"""The vLLM engine as a JSON-lines server: run with the vLLM venv's python.

    VLLM_PYTHON workers/llm/engine_server.py --model DIR [--max-model-len N]

It imports only the standard library and vLLM (it runs outside the main venv). It loads
the model once, writes one ready line, then reads request lines on stdin and writes one
response line per request on stdout, as each finishes (match them by ``id``). Requests
join the running batch between engine steps (continuous batching).

    request   {"id": 7, "prompt": "..."} or {"id": 7, "messages": [{"role", "content"}]}
              + "max_tokens" (int >= 1), "temperature" (>= 0), "seed" (int or null)
    ready     {"ready": true, "max_model_len": 128, "load_s": 41.2}
              or {"ready": false, "error": "load_failed", "detail": "..."} then exit 1
    response  {"id": 7, "text": "...", "prompt_tokens": 5, "completion_tokens": 32,
               "finish_reason": "length"}
              or {"id": 7, "error": "bad_request" | "context_too_long", "detail": "..."}

vLLM logs to stdout, so file descriptor 1 is pointed at stderr and the protocol uses a
private copy of the original stdout. At end of input the server finishes what it has
and exits. If the engine itself fails, the server dies with it: the client restarts it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import sys
import time
from typing import IO, Any

ENV_DEFAULTS = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_LOGGING_STREAM": "ext://sys.stderr",
    "TOKENIZERS_PARALLELISM": "false",
}


class RequestError(Exception):
    """A request this server answers with an error line; the engine keeps running."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def protocol_stream() -> IO[str]:
    """Keep the real stdout for the protocol and send everything else to stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def send(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, ensure_ascii=False) + "\n")
    stream.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="folder of a Hugging Face model")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Any:
    from vllm import EngineArgs, LLMEngine

    engine_args = EngineArgs(
        model=args.model,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        enforce_eager=True,
        gpu_memory_utilization=args.gpu_memory_utilization,
        seed=args.seed,
        disable_log_stats=True,
    )
    return LLMEngine.from_engine_args(engine_args)


class LineReader:
    """Complete lines from a file descriptor, waiting only when asked to."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.pending = b""
        self.ended = False

    def read(self, wait: bool) -> list[bytes]:
        """The lines available now; with ``wait``, block until one arrives or input ends."""
        lines: list[bytes] = []
        while not self.ended:
            timeout = None if wait and not lines else 0
            if not select.select([self.fd], [], [], timeout)[0]:
                break
            lines += self._take(os.read(self.fd, 1 << 20))
        return [line for line in lines if line.strip()]

    def _take(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            self.ended = True
            rest, self.pending = self.pending, b""
            return [rest]
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        return lines


def checked(raw: bytes) -> dict[str, Any]:
    """The request as a dict; raises RequestError when malformed."""
    try:
        request = json.loads(raw)
    except ValueError as exc:
        raise RequestError("bad_request", f"not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise RequestError("bad_request", "a request is a JSON object")
    check_fields(request)
    return request


def check_fields(request: dict[str, Any]) -> None:
    if ("prompt" in request) == ("messages" in request):
        raise RequestError("bad_request", "give exactly one of prompt and messages")
    if "prompt" in request and not isinstance(request["prompt"], str):
        raise RequestError("bad_request", "prompt must be a string")
    if "messages" in request and not valid_messages(request["messages"]):
        raise RequestError("bad_request", "messages must be a list of {role, content} strings")
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError("bad_request", "max_tokens must be an integer >= 1")
    temperature = request.get("temperature", 0.0)
    if not isinstance(temperature, int | float) or temperature < 0:
        raise RequestError("bad_request", "temperature must be a number >= 0")
    seed = request.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("bad_request", "seed must be an integer or null")


def valid_messages(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    )


def prompt_ids(tokenizer: Any, request: dict[str, Any]) -> list[int]:
    """Token ids of the prompt, with the chat template applied to messages."""
    if "prompt" in request:
        return list(tokenizer.encode(request["prompt"]))
    try:
        text = tokenizer.apply_chat_template(
            request["messages"], tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:
        raise RequestError("bad_request", f"chat template failed: {exc}") from exc
    return list(tokenizer.encode(text, add_special_tokens=False))


class Engine:
    """vLLM's step loop with the protocol's requests in flight."""

    def __init__(self, llm_engine: Any, max_model_len: int) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.llm_engine = llm_engine
        self.tokenizer = llm_engine.get_tokenizer()
        self.max_model_len = max_model_len
        self.sampling_params = SamplingParams
        self.tokens_prompt = TokensPrompt
        self.in_flight: dict[str, Any] = {}
        self.counter = itertools.count()

    def busy(self) -> bool:
        return bool(self.in_flight)

    def add(self, request: dict[str, Any]) -> None:
        prompt, params = self.prepare(request)
        engine_id = f"r{next(self.counter)}"
        try:
            self.llm_engine.add_request(engine_id, prompt, params)
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from exc
        self.in_flight[engine_id] = request.get("id")

    def prepare(self, request: dict[str, Any]) -> tuple[Any, Any]:
        ids = prompt_ids(self.tokenizer, request)
        if not ids:
            raise RequestError("bad_request", "the prompt has no tokens")
        if len(ids) + request["max_tokens"] > self.max_model_len:
            raise RequestError(
                "context_too_long",
                f"{len(ids)} prompt + {request['max_tokens']} new tokens"
                f" > max_model_len {self.max_model_len}",
            )
        params = self.sampling_params(
            max_tokens=request["max_tokens"],
            temperature=float(request.get("temperature", 0.0)),
            seed=request.get("seed"),
        )
        return self.tokens_prompt(prompt_token_ids=ids), params

    def step(self) -> list[dict[str, Any]]:
        """One engine step; the responses of the requests that finished in it."""
        finished = [output for output in self.llm_engine.step() if output.finished]
        return [{"id": self.in_flight.pop(o.request_id), **result(o)} for o in finished]


def result(output: Any) -> dict[str, Any]:
    completion = output.outputs[0]
    return {
        "text": completion.text,
        "prompt_tokens": len(output.prompt_token_ids),
        "completion_tokens": len(completion.token_ids),
        "finish_reason": completion.finish_reason,
    }


def accept(engine: Engine, raw: bytes) -> dict[str, Any] | None:
    """Start a request; the error response when it cannot be started."""
    request_id = None
    try:
        request = checked(raw)
        request_id = request.get("id")
        engine.add(request)
    except RequestError as exc:
        return {"id": request_id, "error": exc.code, "detail": exc.detail}
    return None


def serve(engine: Engine, stream: IO[str], lines: LineReader) -> None:
    while not lines.ended or engine.busy():
        for raw in lines.read(wait=not engine.busy()):
            if (refusal := accept(engine, raw)) is not None:
                send(stream, refusal)
        if engine.busy():
            for answer in engine.step():
                send(stream, answer)


def main(argv: list[str]) -> int:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    stream = protocol_stream()
    args = parse_args(argv)
    started = time.monotonic()
    try:
        engine = Engine(load(args), args.max_model_len)
    except Exception as exc:
        send(stream, {"ready": False, "error": "load_failed", "detail": repr(exc)})
        return 1
    load_s = round(time.monotonic() - started, 3)
    send(stream, {"ready": True, "max_model_len": args.max_model_len, "load_s": load_s})
    serve(engine, stream, LineReader())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
