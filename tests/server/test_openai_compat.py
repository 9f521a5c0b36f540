"""The OpenAI-compatible HTTP adapter against a small local fake provider."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from serverproc import ServerProcess, call, rpc, text_of

StartServer = Callable[..., ServerProcess]

API_KEY = "test-key-123"


class FakeProvider:
    """``POST /v1/chat/completions`` like GLM/Kimi; ``mode`` switches to failures."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | error500 | garbage
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(401, {"error": {"message": "bad key"}})
                elif fake.mode == "error500":
                    self._send(500, {"error": {"message": "overloaded"}})
                elif fake.mode == "garbage":
                    self._send(200, {"unexpected": True})
                else:
                    prompt = body["messages"][-1]["content"]
                    self._send(
                        200,
                        {
                            "id": "cmpl-1",
                            "model": body["model"],
                            "choices": [
                                {"index": 0, "message": {"role": "assistant",
                                                         "content": f"fake says: {prompt}"},
                                 "finish_reason": "stop"}
                            ],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                      "total_tokens": 7},
                        },
                    )  # fmt: skip

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


def test_chat_and_analyze_through_the_http_adapter(
    start_server: StartServer, fake_provider: FakeProvider
) -> None:
    server = start_server(
        "--provider-base-url", fake_provider.url,
        "--breaker-failures", "2", "--breaker-cooldown", "30",
        env={"TOOLSERVER_PROVIDER_API_KEY": API_KEY},
    )  # fmt: skip
    with server.connect() as ws:
        answer = rpc(ws, call("chat", 1, prompt="hello", model="glm-4.6", max_tokens=16))
        assert text_of(answer) == "fake says: hello"
        sent = fake_provider.requests[-1]
        assert sent["path"] == "/v1/chat/completions"
        assert sent["auth"] == f"Bearer {API_KEY}"
        assert sent["body"]["model"] == "glm-4.6"
        assert sent["body"]["max_tokens"] == 16
        assert sent["body"]["messages"] == [{"role": "user", "content": "hello"}]

        analysis = text_of(rpc(ws, call("analyze", 2, text="logs", steps=3, provider="kimi")))
        # Each step is one upstream call whose prompt carries the previous finding.
        assert [line[:22] for line in analysis.splitlines() if line[0].isdigit()] == [
            f"{i}. fake says: step {i}/3" for i in (1, 2, 3)
        ]
        assert fake_provider.requests[-1]["body"]["model"].startswith(("kimi", "moonshot"))

        # Upstream failures are tool errors, then the breaker opens and stops calling it.
        fake_provider.mode = "error500"
        for i in range(2):
            answer = rpc(ws, call("chat", 10 + i, prompt="x"))
            assert answer["result"]["isError"] is True
            assert "HTTP 500" in text_of(answer)
        calls_before = len(fake_provider.requests)
        answer = rpc(ws, call("chat", 20, prompt="x"))
        assert text_of(answer).startswith("circuit open for provider glm")
        assert len(fake_provider.requests) == calls_before, "open circuit still called upstream"

        # A malformed body is a tool error too; the other provider is independent.
        fake_provider.mode = "garbage"
        answer = rpc(ws, call("chat", 30, prompt="x", provider="kimi"))
        assert answer["result"]["isError"] is True
        assert "malformed" in text_of(answer)


def test_unreachable_provider_and_wrong_key_are_tool_errors(
    start_server: StartServer, fake_provider: FakeProvider
) -> None:
    server = start_server(
        "--provider-base-url", "glm=http://127.0.0.1:9/v1",  # discard port: refused
        "--provider-base-url", f"kimi={fake_provider.url}",
        "--provider-timeout", "2",
        env={"TOOLSERVER_KIMI_API_KEY": "wrong"},
    )  # fmt: skip
    with server.connect() as ws:
        started = time.monotonic()
        answer = rpc(ws, call("chat", 1, prompt="x"))
        assert answer["result"]["isError"] is True
        assert "unreachable" in text_of(answer)
        assert time.monotonic() - started < 3
        answer = rpc(ws, call("chat", 2, prompt="x", provider="kimi"))
        assert answer["result"]["isError"] is True
        assert "HTTP 401" in text_of(answer)
        assert fake_provider.requests[-1]["auth"] == "Bearer wrong"
        # The server is fine.
        assert text_of(rpc(ws, call("echo", 3, text="alive"))) == "alive"
