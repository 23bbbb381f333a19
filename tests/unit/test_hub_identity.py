"""A hub model's identity is the commit its revision points to (resolved through the hub's API, here a local
server speaking it), so a branch that moves is a new cache key; a revision the hub lacks is a clear error."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from probekit.errors import ModelError
from probekit.models.loading import hub_commit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(BaseHTTPRequestHandler):
    """GET /api/models/<org>/<name>/revision/<revision>, as huggingface.co answers it."""

    def do_GET(self):  # noqa: N802 - the http.server API
        parts = self.path.split("?")[0].strip("/").split("/")
        repo, revision = "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main"
        if repo != "org/model":
            self._answer(404, {"error": "Repository not found"}, "RepoNotFound")
        elif revision not in ("main", "step1000"):
            self._answer(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
        else:
            self._answer(200, {"id": repo, "sha": COMMIT if revision == "step1000" else "f" * 40})

    def _answer(self, status: int, body: dict, error_code: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def online(monkeypatch):
    """Online mode, whatever the environment (CI exports HF_HUB_OFFLINE=1, which huggingface_hub reads at import)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()
    server.server_close()


def test_a_revision_resolves_to_its_commit(hub):
    assert hub_commit("org/model", "step1000") == COMMIT
    assert hub_commit("org/model", None) == "f" * 40


def test_a_missing_revision_or_repository_is_a_clear_error(hub):
    with pytest.raises(ModelError, match=r"'org/model' has no revision 'step7' on the hub"):
        hub_commit("org/model", "step7")
    with pytest.raises(ModelError, match=r"'org/other' is neither a local folder nor a model on the hub"):
        hub_commit("org/other", "main")


def test_offline_the_revision_name_stands_in(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_commit("org/model", "step1000") is None
    assert hub_commit("org/model", COMMIT) == COMMIT  # a commit needs no lookup


def test_an_unreachable_hub_is_not_an_error(monkeypatch):
    online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert hub_commit("org/model", "step1000") is None
