"""`fastclf serve`: the real server, started with the CLI in a subprocess on a free loopback port
and called over HTTP; tests that wrap the classifier (slow, failing) run create_app under uvicorn,
configured as the CLI does, in a thread (thread_server). A tiny model (tiny_body_dir) keeps it fast."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from samples import CALIBRATION, FOOD, SPORT, train_tiny

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key-123"


SLOW = ("import time; from fastclf.model import Classifier; p = Classifier.predict_proba; "
        "Classifier.predict_proba = lambda self, texts, **kw: (time.sleep({}), p(self, texts, **kw))[1]; "
        "from fastclf.cli.main import main; main()")


class Server:
    """`python -m fastclf serve MODEL --port 0 ...` in a subprocess; its stderr is read by a thread."""

    def __init__(self, model_dir: Path, *args: str, env: dict[str, str] | None = None,
                 python_flags: tuple[str, ...] = (), slow_ms: int = 0):
        full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        if "FASTCLF_API_KEY" not in (env or {}):
            full_env.pop("FASTCLF_API_KEY", None)
        # slow_ms: every predict_proba call of the served model sleeps that long first
        launch = ["-c", SLOW.format(slow_ms / 1000)] if slow_ms else ["-m", "fastclf"]
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, *launch, "serve", str(model_dir), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT,
        )
        self.lines: list[str] = []
        self._url = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._url.wait(120):
            self.kill()
            raise AssertionError("the server did not start:\n" + "\n".join(self.lines[-30:]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the server exited:\n" + "\n".join(self.lines[-30:])
            try:
                if get(self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError("the server never became healthy")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self._url.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Wrapped:
    """A classifier that delegates to ``clf``; its predict_proba records each batch, sleeps ``delay`` s,
    and fails (with a long message) on a batch holding a text that contains "boom"."""

    def __init__(self, clf, delay: float = 0.0):
        self.clf, self.delay, self.calls = clf, delay, []

    def __getattr__(self, name: str):
        return getattr(self.clf, name)

    def predict_proba(self, texts, batch_size: int = 32):
        self.calls.append(list(texts))
        time.sleep(self.delay)
        if any("boom" in t for t in texts):
            raise RuntimeError("boom in the runtime\n" + "  frame\n" * 500)
        return self.clf.predict_proba(texts, batch_size=batch_size)


@contextmanager
def thread_server(classifier, **settings):
    """``create_app(classifier)`` served by uvicorn, configured as ``fastclf serve`` does, in a
    thread on a free loopback port: yields its URL, then stops it."""
    import uvicorn

    from fastclf.scoring.serve import ServeSettings, create_app
    from fastclf.scoring.serve.app import _bind, uvicorn_config

    settings = ServeSettings(**{"port": 0, **settings})
    sock = _bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(create_app(classifier, settings), settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def request(url: str, body: bytes | str | dict | list | None = None, *, method: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one HTTP request; HTTP errors are returned, not raised."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def get(url: str, **kw) -> tuple[int, bytes]:
    status, _, body = request(url, **kw)
    return status, body


AUTH = {"Authorization": f"Bearer {API_KEY}"}


def predict(server: Server, body, headers=AUTH, **kw):
    status, hdrs, raw = request(server.url + "/predict", body, headers=headers, **kw)
    return status, hdrs, json.loads(raw)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 if absent); labels in any order."""
    for line in text.splitlines():
        m = re.fullmatch(re.escape(name) + r"(?:\{(.*)\})? (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")) == labels:
            return float(m.group(2))
    return 0.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_body_dir) -> Path:
    path = tmp_path_factory.mktemp("serve") / "model"
    train_tiny(tiny_body_dir).save(path)
    return path


@pytest.fixture(scope="module")
def clf(model_dir):
    from fastclf import Classifier

    return Classifier.load(model_dir)


@pytest.fixture(scope="module")
def server(model_dir):
    """API key, small limits, and a 100 ms batching window so that concurrent requests meet."""
    srv = Server(model_dir, "--api-key", API_KEY, "--max-inputs", "8", "--max-body-bytes", "2000",
                 "--max-wait-ms", "100", "--max-batch", "64")
    yield srv
    assert srv.stop() == 0, "\n".join(srv.lines[-20:])


# ---------------------------------------------------------------------------------- good requests


def test_health_and_info(server, model_dir, clf):
    status, body = get(server.url + "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = get(server.url + "/info", headers=AUTH)
    info = json.loads(body)
    assert status == 200
    assert info["labels"] == [str(c) for c in clf.classes_]
    assert info["variant"] == "torch-fp32"
    assert info["multi_label"] is False
    assert info["model"] == model_dir.name and str(model_dir.parent) not in body.decode()  # no absolute path
    assert info["versions"]["fastclf"] and info["versions"]["torch"]
    assert info["limits"]["max_inputs"] == 8


def test_single_string_answers_one_list_with_the_best_label(server, clf):
    text = SPORT[0]
    status, _, body = predict(server, {"inputs": text})
    assert status == 200
    proba = clf.predict_proba([text])[0]
    best = int(np.argmax(proba))
    assert [d["label"] for d in body] == [clf.predict([text])[0]] == [str(clf.classes_[best])]
    assert body[0]["score"] == pytest.approx(float(proba[best]), abs=1e-4)


def test_list_and_top_k_match_in_process_predict(server, clf):
    texts = SPORT[:3] + FOOD[:3]
    status, _, body = predict(server, {"inputs": texts, "top_k": 5})
    assert status == 200 and len(body) == len(texts)
    proba = clf.predict_proba(texts)
    for row, expected, p in zip(body, clf.predict(texts), proba):
        assert len(row) == len(clf.classes_)  # top_k past the number of labels: all of them
        assert row[0]["label"] == expected
        scores = [d["score"] for d in row]
        assert scores == sorted(scores, reverse=True)
        by_label = {d["label"]: d["score"] for d in row}
        for label, q in zip(clf.classes_, p):
            assert by_label[str(label)] == pytest.approx(float(q), abs=1e-4)
    status, _, body = predict(server, {"inputs": texts, "top_k": 1})
    assert status == 200 and [[d["label"] for d in row] for row in body] == [[x] for x in clf.predict(texts)]


def test_concurrent_requests_are_batched_together(server, clf):
    before = get(server.url + "/metrics", headers=AUTH)[1].decode()
    texts = SPORT + FOOD
    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(lambda t: predict(server, {"inputs": [t]}), texts))
    assert all(status == 200 for status, _, _ in answers)
    assert [body[0][0]["label"] for _, _, body in answers] == clf.predict(texts)
    after = get(server.url + "/metrics", headers=AUTH)[1].decode()
    batches = metric(after, "fastclf_batch_size_count") - metric(before, "fastclf_batch_size_count")
    batched = metric(after, "fastclf_batch_size_sum") - metric(before, "fastclf_batch_size_sum")
    assert batched == len(texts)
    assert batches < len(texts), "12 concurrent one-text requests were never batched together"


# ---------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("body, status, error_type, words", [
    ("{not json", 422, "invalid_request", "not valid JSON"),
    ('"just a string"', 422, "invalid_request", "JSON object"),
    ({"text": "x"}, 422, "invalid_request", "unknown field"),
    ({}, 422, "invalid_request", "'inputs' is missing"),
    ({"inputs": []}, 422, "invalid_request", "empty list"),
    ({"inputs": 42}, 422, "invalid_request", "string or a list of strings"),
    ({"inputs": ["ok", 3]}, 422, "invalid_request", "item 1"),
    ({"inputs": ["ok", None]}, 422, "invalid_request", "item 1"),
    ({"inputs": "ok", "top_k": 0}, 422, "invalid_request", "top_k"),
    ({"inputs": "ok", "top_k": "2"}, 422, "invalid_request", "top_k"),
    ({"inputs": "ok", "top_k": True}, 422, "invalid_request", "top_k"),
    ({"inputs": ["a"] * 9}, 413, "too_many_inputs", "at most 8"),
    ({"inputs": ["x" * 2100]}, 413, "payload_too_large", "at most 2000"),
])
def test_bad_requests_get_their_status_and_a_json_error(server, body, status, error_type, words):
    got, _, answer = predict(server, body)
    assert got == status
    assert answer["error_type"] == error_type and words in answer["error"], answer
    assert set(answer) == {"error", "error_type"}


def test_chunked_body_over_the_limit_is_413(server):
    def chunks():
        for _ in range(30):
            yield b" " * 100

    before = metric(get(server.url + "/metrics", headers=AUTH)[1].decode(), "fastclf_requests_total",
                    path="/predict", code="413")
    req = urllib.request.Request(server.url + "/predict", data=chunks(), method="POST",
                                 headers={**AUTH, "Content-Type": "application/json",
                                          "Transfer-Encoding": "chunked"})
    try:
        urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as err:
        assert err.code == 413
        assert json.loads(err.read())["error_type"] == "payload_too_large"
    except urllib.error.URLError as err:
        # the server may answer and close before the client has sent its last chunks (a busy
        # machine): the client then sees a broken pipe, and the server's own count says 413
        assert isinstance(err.reason, (BrokenPipeError, ConnectionResetError)), err
    else:
        pytest.fail("a chunked body over the limit was accepted")
    after = metric(get(server.url + "/metrics", headers=AUTH)[1].decode(), "fastclf_requests_total",
                   path="/predict", code="413")
    assert after == before + 1


def test_unknown_path_and_wrong_method_are_json_errors(server):
    status, body = get(server.url + "/nope", headers=AUTH)
    assert status == 404 and json.loads(body)["error_type"] == "not_found"
    status, body = get(server.url + "/predict", headers=AUTH)
    assert status == 405 and json.loads(body)["error_type"] == "method_not_allowed"


def test_api_key(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        status, hdrs, body = predict(server, {"inputs": "goal"}, headers=headers)
        assert status == 401 and body["error_type"] == "unauthorized", headers
        assert hdrs.get("WWW-Authenticate") == "Bearer"
    assert get(server.url + "/info")[0] == 401
    assert get(server.url + "/metrics")[0] == 401
    assert get(server.url + "/health")[0] == 200  # probes need no key
    assert predict(server, {"inputs": "goal"})[0] == 200


def test_metrics_count_requests_by_status(server):
    page = get(server.url + "/metrics", headers=AUTH)[1].decode()
    ok = metric(page, "fastclf_requests_total", path="/predict", code="200")
    bad = metric(page, "fastclf_requests_total", path="/predict", code="422")
    predict(server, {"inputs": "a late goal"})
    predict(server, {"inputs": "a late goal"})
    predict(server, {"inputs": []})
    page = get(server.url + "/metrics", headers=AUTH)[1].decode()
    assert metric(page, "fastclf_requests_total", path="/predict", code="200") == ok + 2
    assert metric(page, "fastclf_requests_total", path="/predict", code="422") == bad + 1
    assert "# TYPE fastclf_request_duration_seconds histogram" in page
    assert metric(page, "fastclf_request_duration_seconds_count") >= ok + 3
    assert metric(page, "fastclf_request_duration_seconds_bucket", le="+Inf") >= ok + 3
    assert "# TYPE fastclf_queue_depth gauge" in page and metric(page, "fastclf_queue_depth") == 0
    assert metric(page, "fastclf_batch_size_count") >= 1


# ---------------------------------------------------------------------------------- overload, shutdown


def test_burst_past_the_queue_gets_only_200_and_429_then_sigterm_finishes_the_slow_request(model_dir, clf):
    # one text a batch, 100 ms each (a slowed model), at most 20 tokens waiting
    srv = Server(model_dir, "--max-batch", "1", "--max-queue", "20", "--max-inputs", "8", "--max-wait-ms", "0",
                 slow_ms=100)
    try:
        def one(i: int):
            status, hdrs, body = request(srv.url + "/predict", {"inputs": SPORT[i % len(SPORT)]})
            return i, status, hdrs, json.loads(body)

        expected = clf.predict(SPORT)
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(one, range(200)))
        codes = [a[1] for a in answers]
        assert set(codes) == {200, 429}, sorted(set(codes))
        for i, status, hdrs, body in answers:
            if status == 429:
                assert body["error_type"] == "queue_full" and int(hdrs["Retry-After"]) >= 1
            else:
                assert [d["label"] for d in body] == [expected[i % len(SPORT)]]
        page = get(srv.url + "/metrics")[1].decode()
        assert metric(page, "fastclf_requests_total", path="/predict", code="429") == codes.count(429)
        assert metric(page, "fastclf_requests_total", path="/predict", code="200") == codes.count(200)

        # a request of 8 texts takes 8 batches of 100 ms: SIGTERM once it is in flight
        texts = SPORT + FOOD[:2]
        result: dict = {}

        def slow():
            result["answer"] = request(srv.url + "/predict", {"inputs": texts}, timeout=60)

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 30
        while metric(get(srv.url + "/metrics")[1].decode(), "fastclf_requests_in_flight") < 1:
            assert time.monotonic() < deadline, "the slow request never arrived"
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)
        thread.join(60)
        status, _, body = result["answer"]
        assert status == 200
        assert [row[0]["label"] for row in json.loads(body)] == clf.predict(texts)
        assert srv.proc.wait(60) == 0, "\n".join(srv.lines[-20:])
        assert any("stopped" in line for line in srv.lines)
    finally:
        srv.kill()


# ---------------------------------------------------------------------------------- onnx, startup errors


def test_onnx_variant_serves_without_importing_torch(model_dir, tmp_path, clf):
    import shutil

    from fastclf.accelerate.export import accelerate

    onnx_dir = tmp_path / "onnx-model"
    shutil.copytree(model_dir, onnx_dir)
    results = accelerate(onnx_dir, ["onnx-fp32"], calibration_texts=CALIBRATION, max_accuracy_loss=100).results
    assert all(r.ok for r in results), results
    # -X importtime writes every module the server imports to stderr
    # the API key comes from the environment here
    srv = Server(onnx_dir, "--variant", "onnx-fp32", python_flags=("-X", "importtime"),
                 env={"FASTCLF_API_KEY": "from-env"})
    try:
        key = {"Authorization": "Bearer from-env"}
        assert predict(srv, {"inputs": SPORT[0]}, headers={})[0] == 401
        status, _, body = predict(srv, {"inputs": SPORT[:2], "top_k": 2}, headers=key)
        assert status == 200
        assert [row[0]["label"] for row in body] == clf.predict(SPORT[:2])
        assert json.loads(get(srv.url + "/info", headers=key)[1])["variant"] == "onnx-fp32"
        assert srv.stop(signal.SIGINT) == 0  # Ctrl-C stops it as cleanly as SIGTERM
    finally:
        srv.kill()
    imported = {m.group(1) for line in srv.lines if (m := re.match(r"import time:.*\|\s+(\S+)$", line))}
    assert "fastapi" in imported and any(m.startswith("onnxruntime") for m in imported)
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def test_startup_errors_are_one_line(model_dir, tmp_path):
    def run_cli(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        return subprocess.run([sys.executable, "-m", "fastclf", "serve", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)

    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    for args, words in [
        ((str(model_dir), "--port", str(busy.getsockname()[1])), "cannot listen on 127.0.0.1"),
        ((str(tmp_path / "missing"),), "model directory not found"),
        ((str(model_dir), "--variant", "onnx-int8"), "not exported"),
        ((str(model_dir), "--variant", "bogus"), "unknown variant"),
        ((str(model_dir), "--max-queue", "0"), "--max-queue must be at least 1"),
        ((str(model_dir), "--max-body-bytes", "lots"), "not a size"),
        ((str(model_dir), "--api-key", "abc "), "the API key starts or ends with whitespace"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, proc.stderr)
    busy.close()


def test_listening_socket_sets_tcp_nodelay():
    # asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is TCP; without
    # it a keep-alive client (hey, browsers) waited ~40 ms for a delayed ACK on every response
    import socket

    from fastclf.scoring.serve.app import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()


def test_create_app_serves_a_loaded_classifier_in_process(clf):
    import asyncio

    import httpx

    from fastclf.scoring.serve import ServeSettings, create_app

    app = create_app(clf, ServeSettings(max_inputs=4, max_wait_ms=0))

    async def calls():
        async with app.router.lifespan_context(app):  # starts the batcher, drains it on exit
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                health = await client.get("/health")
                answer = await client.post("/predict", json={"inputs": FOOD[:2], "top_k": 2})
                too_many = await client.post("/predict", json={"inputs": FOOD[:5]})
        return health, answer, too_many

    health, answer, too_many = asyncio.run(calls())
    assert health.json() == {"status": "ok"}
    assert answer.status_code == 200
    assert [row[0]["label"] for row in answer.json()] == clf.predict(FOOD[:2])
    assert too_many.status_code == 413 and too_many.json()["error_type"] == "too_many_inputs"


def test_missing_serve_extra_is_one_line(model_dir):
    # fastapi made unimportable, as when the serve extra is not installed
    code = ("import sys; sys.modules['fastapi'] = None; from fastclf.cli.main import main; "
            f"sys.argv = ['fastclf', 'serve', {str(model_dir)!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: fastapi is not installed; install it with: pip install 'fastclf[serve]'"]


def test_health_is_503_while_the_model_loads_and_after_a_failed_load(clf):
    import asyncio

    import httpx

    from fastclf.scoring.serve import ServeSettings, create_app

    release = threading.Event()

    def slow_loader():
        assert release.wait(30)
        return clf

    failures = []

    def failing_loader():
        raise OSError("disk on fire")

    async def calls(loader, release_after: bool):
        app = create_app(loader, ServeSettings(), on_load_error=failures.append)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                loading = await client.get("/health")
                refused = await client.post("/predict", json={"inputs": "x"})
                if release_after:
                    release.set()
                for _ in range(300):
                    final = await client.get("/health")
                    if final.status_code == 200 or failures:
                        break
                    await asyncio.sleep(0.05)
                final = await client.get("/health")
                refused_after = await client.post("/predict", json={"inputs": "x"})
        return loading, refused, final, refused_after

    loading, refused, final, after = asyncio.run(calls(slow_loader, True))
    assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
    assert refused.status_code == 503 and refused.json()["error_type"] == "not_ready"
    assert (final.status_code, final.json()) == (200, {"status": "ok"})
    assert after.status_code == 200

    _, _, final, after = asyncio.run(calls(failing_loader, False))
    assert [str(e) for e in failures] == ["disk on fire"]
    assert (final.status_code, final.json()) == (503, {"status": "failed"})
    assert after.status_code == 503 and "disk on fire" in after.json()["error"]


def test_rank_labels_single_and_multi_label():
    from fastclf.scoring.serve import rank_labels

    proba = np.array([[0.2, 0.7, 0.1], [0.05, 0.3, 0.65]])
    labels = ["a", "b", "c"]
    single = rank_labels(proba, labels, multi_label=False, threshold=0.5, top_k=None)
    assert [[d["label"] for d in row] for row in single] == [["b"], ["c"]]
    top2 = rank_labels(proba, labels, multi_label=False, threshold=0.5, top_k=2)
    assert [[d["label"] for d in row] for row in top2] == [["b", "a"], ["c", "b"]]
    assert top2[0][0]["score"] == pytest.approx(0.7)
    # multi-label: every label at or over the threshold, possibly none; top_k overrides the threshold
    multi = rank_labels(proba, labels, multi_label=True, threshold=0.25, top_k=None)
    assert [[d["label"] for d in row] for row in multi] == [["b"], ["c", "b"]]
    none = rank_labels(proba, labels, multi_label=True, threshold=0.9, top_k=None)
    assert none == [[], []]
    multi_top = rank_labels(proba, labels, multi_label=True, threshold=0.9, top_k=3)
    assert [[d["label"] for d in row] for row in multi_top] == [["b", "a", "c"], ["c", "b", "a"]]


def test_parse_size_and_settings_checks():
    from fastclf.scoring.serve import ServeSettings, ServeSettingsError, parse_size

    assert parse_size("1MB") == 1_000_000
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("2000") == 2000
    assert parse_size("1.5 kb") == 1500
    with pytest.raises(ServeSettingsError, match="not a size"):
        parse_size("lots")
    assert ServeSettings().max_queue == 2**20  # any 1 MB body fits
    with pytest.raises(ValueError, match="--max-batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="API key"):
        ServeSettings(api_key=" ")


def test_micro_batcher_interleaves_bounds_tokens_and_drains():
    import asyncio

    from fastclf.scoring.serve import MicroBatcher, QueueFull, ServeSettings, ShuttingDown

    calls: list[list[str]] = []
    gate = threading.Event()

    def fake_predict(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("boom")
        assert gate.wait(10)
        return np.array([[float(t), -float(t)] for t in texts])

    async def until(condition) -> None:
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("timed out")

    async def scenario():
        # a text costs its characters here: "10" is 2 tokens; at most 3 texts and 4 tokens a batch
        settings = ServeSettings(max_batch=3, max_batch_tokens=4, max_wait_ms=50, max_queue=10)
        batcher = MicroBatcher(fake_predict, settings)
        batcher.start()
        first = asyncio.create_task(batcher.submit(["9"]))
        await until(lambda: calls)  # the worker is busy with ["9"] until the gate opens
        big = asyncio.create_task(batcher.submit([str(i) for i in range(7)]))
        await until(lambda: batcher.waiting == 7)
        small = asyncio.create_task(batcher.submit(["10"]))
        await until(lambda: batcher.waiting == 9)
        with pytest.raises(QueueFull):
            await batcher.submit(["11", "2"])  # 9 + 4 tokens > 10
        gate.set()
        results = [await first, await big, await small]
        results.append(await batcher.submit([str(i) for i in range(12)]))  # over the queue, but nothing waits
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["boom"])
        gate.clear()
        last = asyncio.create_task(batcher.submit(["12", "13"]))
        await until(lambda: calls[-1] == ["12", "13"])  # running, held at the gate
        queued = asyncio.create_task(batcher.submit(["15"]))
        await until(lambda: batcher.waiting == 2)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown):
            await batcher.submit(["14"])
        gate.set()
        await closing  # drains the queued request before stopping
        return [*results, last.result(), queued.result()], batcher.waiting

    results, waiting = asyncio.run(scenario())
    assert [r[:, 0].tolist() for r in results] == [[9], list(range(7)), [10], list(range(12)), [12, 13], [15]]
    assert waiting == 0
    # the small request rides in the first batch after it came, taking turns with the big one;
    # a text is taken alone when it is over the token budget with others
    assert calls[:4] == [["9"], ["0", "1", "10"], ["2", "3", "4"], ["5", "6"]]
    assert all(sum(map(len, c)) <= 4 or len(c) == 1 for c in calls)
    assert calls[-3:] == [["boom"], ["12", "13"], ["15"]]


# ---------------------------------------------------------------------------------- isolation


@pytest.mark.parametrize("bad, index, words", [
    ([SPORT[0], ""], 1, "empty"),
    ([FOOD[0], FOOD[1], "x\udc80"], 2, "lone surrogate"),
])
def test_a_bad_request_among_concurrent_ones_fails_alone(server, clf, bad, index, words):
    texts = [(SPORT + FOOD)[i % 12] for i in range(30)]
    bodies: list[dict] = [{"inputs": [t]} for t in texts]
    bodies.insert(15, {"inputs": bad})
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: predict(server, b), bodies))
    status, _, body = answers.pop(15)
    assert status == 422 and body["error_type"] == "invalid_request", body
    assert f"text {index} " in body["error"] and words in body["error"], body
    assert [a[0] for a in answers] == [200] * 30
    assert [a[2][0][0]["label"] for a in answers] == clf.predict(texts)


def test_a_batch_that_fails_is_retried_request_by_request(clf, capfd, caplog):
    wrapped = Wrapped(clf, delay=0.05)
    bodies = [{"inputs": [t]} for t in SPORT + FOOD]
    bodies.insert(6, {"inputs": ["fine", "boom"]})
    with thread_server(wrapped, max_wait_ms=100) as url:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: request(url + "/predict", b), bodies))
    status, _, raw = answers.pop(6)
    assert status == 500 and json.loads(raw) == {"error": "inference failed: boom in the runtime",
                                                  "error_type": "internal"}
    assert [a[0] for a in answers] == [200] * 12
    assert [json.loads(a[2])[0][0]["label"] for a in answers] == clf.predict(SPORT + FOOD)
    assert max(len(c) for c in wrapped.calls) > 2, "the requests never met in a batch"
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "POST /predict: inference failed: RuntimeError: boom in the runtime"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_small_request_overtakes_a_large_one_in_flight(clf):
    wrapped = Wrapped(clf, delay=0.05)
    big = [" ".join([SPORT[i % 6]] * 4) for i in range(64)]  # about 24 tokens each: 2 a batch
    finished: list[str] = []

    def send(name: str, texts: list[str]) -> int:
        status = request(url + "/predict", {"inputs": texts})[0]
        finished.append(name)
        return status

    with thread_server(wrapped, max_batch_tokens=64, max_wait_ms=0) as url, ThreadPoolExecutor(2) as pool:
        large = pool.submit(send, "large", big)
        deadline = time.monotonic() + 30
        while not wrapped.calls:  # the large request is being classified
            assert time.monotonic() < deadline
            time.sleep(0.005)
        small = pool.submit(send, "small", [FOOD[0]])
        assert (large.result(60), small.result(60)) == (200, 200)
    assert finished == ["small", "large"]
    assert sum(len(c) for c in wrapped.calls) == 65 and len(wrapped.calls) > 20
    assert all(sum(len(t.split()) for t in c) <= 64 for c in wrapped.calls)



# ---------------------------------------------------------------------------------- hygiene


def raw(url: str, data: bytes, wait: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it or ``wait`` passes."""
    import socket

    host, port = url.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except TimeoutError:
            got += b"<still open>"
    return got


def test_hostile_bodies_are_422_and_the_log_stays_quiet(clf, capfd):
    with thread_server(clf) as url:
        for body, content_type, words in [
            ("[" * 5000, "application/json", "not valid JSON"),  # RecursionError in the parser
            ('{"inputs": "x", "top_k": ' + "9" * 5000 + "}", "application/json", "not valid JSON"),
            ('{"inputs": "x"}', "text/plain", "Content-Type: application/json"),
            ('{"inputs": "x"}', "", "Content-Type: application/json"),
        ]:
            status, _, answer = request(url + "/predict", body, headers={"Content-Type": content_type})
            assert status == 422, (body[:30], answer)
            assert json.loads(answer)["error_type"] == "invalid_request" and words in json.loads(answer)["error"]
        # a client that goes away halfway through its body
        raw(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"inputs\"", wait=0.2)
        assert request(url + "/predict", {"inputs": "x"})[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR" not in err, err[-2000:]


def test_an_unexpected_error_is_a_json_500_and_one_log_line(clf, caplog, capfd):
    class WrongWidth(Wrapped):
        def predict_proba(self, texts, batch_size: int = 32):
            return np.full((len(texts), 5), 0.2)  # more columns than labels: ranking them fails

    with thread_server(WrongWidth(clf)) as url:
        status, _, answer = request(url + "/predict", {"inputs": "x", "top_k": 5})
        assert request(url + "/health")[0] == 200
    assert status == 500 and json.loads(answer)["error_type"] == "internal"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("POST /predict: IndexError:"), errors
    assert "Traceback" not in capfd.readouterr().err


def test_slow_clients_are_cut_off_and_connections_are_capped(clf):
    with thread_server(clf, read_timeout_s=1) as url:
        started = time.monotonic()
        assert raw(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n") == b""  # headers never finished: closed
        assert time.monotonic() - started < 8
        answer = raw(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"inputs\"")
        assert answer.startswith(b"HTTP/1.1 408") and b'"error_type":"timeout"' in answer
    import socket

    with thread_server(clf, max_connections=3) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            assert request(url + "/predict", {"inputs": "x"})[0] == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert request(url + "/predict", {"inputs": "x"})[0] == 200


def test_access_log_hosts_and_no_docs(clf, capfd):
    with thread_server(clf, access_log=True) as url:
        port = url.rsplit(":", 1)[1]
        assert request(url + "/predict", {"inputs": "x"})[0] == 200
        assert request(url + "/predict", {"inputs": "x"}, headers={"Host": f"localhost:{port}"})[0] == 200
        status, _, body = request(url + "/predict", {"inputs": "x"}, headers={"Host": f"rebound.example:{port}"})
        assert status == 400
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert request(url + path)[0] == 404, path
    out = capfd.readouterr().out  # uvicorn's access log goes to standard output
    assert '"POST /predict HTTP/1.1" 200' in out and '"GET /docs HTTP/1.1" 404' in out, out[-2000:]
    with thread_server(clf, allowed_hosts=("*",)) as url:
        assert request(url + "/predict", {"inputs": "x"}, headers={"Host": "rebound.example"})[0] == 200


def test_a_busy_keep_alive_connection_is_not_cut_by_the_header_deadline(clf):
    import http.client

    with thread_server(clf, read_timeout_s=0.3) as url:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
        deadline, answered = time.monotonic() + 2, 0
        while time.monotonic() < deadline:  # back to back on one connection, for several deadlines
            conn.request("POST", "/predict", body=json.dumps({"inputs": "x"}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            answered += 1
        conn.close()
    assert answered > 5
