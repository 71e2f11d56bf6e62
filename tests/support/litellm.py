"""LiteLLM's proxy for tests, in its own virtual environment (`.venv-bench`, as the benchmark's),
with keywarden's callback installed the way a LiteLLM user installs it: the one module file next
to the proxy's config, aiokafka in LiteLLM's environment, one `callbacks:` line.

`python -m tests.support.litellm` prepares the environment once (stamp
`.venv-bench/.keywarden-litellm`); `make test` runs it. A failure is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from keywarden.settings import PROJECT_ROOT

VENV = PROJECT_ROOT / ".venv-bench"
# Pinned: an unpinned install took whatever PyPI published that day (and one such day's wheel
# failed its hash check in CI). Move the pin by hand, with the LiteLLM suite run against it.
REQUIREMENTS = ("litellm[proxy]==1.108.7", "aiokafka[lz4,snappy,zstd]==0.14.0")
INSTALL_ATTEMPTS = 3
STAMP = VENV / ".keywarden-litellm"
CALLBACK_SOURCE = PROJECT_ROOT / "keywarden" / "integrations" / "litellm.py"


def ensure_venv(timeout_s: float = 900) -> None:
    """LiteLLM's proxy and aiokafka in `.venv-bench`, installed once; raises if they cannot be."""
    wanted = "\n".join(REQUIREMENTS)
    if STAMP.exists() and STAMP.read_text() == wanted and (VENV / "bin" / "litellm").exists():
        return
    python = VENV / "bin" / "python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120,
                           capture_output=True)
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"creating {VENV} failed: {tail}") from None
    failures = []
    for attempt in range(INSTALL_ATTEMPTS):
        # A download that arrives damaged (a hash mismatch) or cut off is tried again, the
        # retries around pip's cache; anything that fails every time is reported whole.
        cache = [] if attempt == 0 else ["--no-cache-dir"]
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *cache, *REQUIREMENTS],
            timeout=timeout_s, capture_output=True)
        if result.returncode == 0:
            STAMP.write_text(wanted)
            return
        failures.append(result.stderr.decode(errors="replace").strip().splitlines()[-5:])
        if attempt + 1 < INSTALL_ATTEMPTS:
            time.sleep(5 * (attempt + 1))
    raise RuntimeError(f"installing {REQUIREMENTS} into {VENV} failed "
                       f"{INSTALL_ATTEMPTS} times: {failures}")


CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}/v1
      api_key: os.environ/KW_TEST_PROVIDER_KEY
  - model_name: broken
    litellm_params:
      model: openai/fake-error-400
      api_base: {api_base}/v1
      api_key: os.environ/KW_TEST_PROVIDER_KEY
litellm_settings:
  telemetry: false
  num_retries: 0
  callbacks: keywarden_litellm.keywarden_callback
router_settings:
  num_retries: 0
general_settings:
  master_key: os.environ/KW_TEST_LITELLM_MASTER_KEY
"""
# Keys reach LiteLLM through its environment, never a file: the hostile suite searches every
# file of the test session for the fake provider's keys.


@dataclass(frozen=True)
class LiteLLMProxy:
    url: str
    master_key: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def litellm_proxy(scratch: Path, provider_url: str, provider_key: str, master_key: str,
                  kafka_bootstrap: str, gateway_id: str) -> Iterator[LiteLLMProxy]:
    """The proxy on a free loopback port with keywarden's callback; stopped at the end."""
    ensure_venv()
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy(CALLBACK_SOURCE, scratch / "keywarden_litellm.py")  # what a user copies
    config = scratch / "config.yaml"
    config.write_text(CONFIG.format(api_base=provider_url))
    port = _free_port()
    log_path = scratch / "litellm.log"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "DISABLE_SCHEMA_UPDATE": "True", "LITELLM_LOG": "ERROR",
           "KW_TEST_PROVIDER_KEY": provider_key, "KW_TEST_LITELLM_MASTER_KEY": master_key,
           "KEYWARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "KEYWARDEN_LITELLM_GATEWAY_ID": gateway_id}
    env.pop("PYTHONPATH", None)  # LiteLLM's environment only: nothing of keywarden's
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port), "--num_workers", "1"],
            cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    proxy = LiteLLMProxy(f"http://127.0.0.1:{port}", master_key, log_path)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"LiteLLM exited with {process.returncode}:\n{proxy.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(proxy.url + "/health/liveliness", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"LiteLLM did not start in 180 s:\n{proxy.log()}")
            time.sleep(0.3)
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


if __name__ == "__main__":
    ensure_venv()
    print(f"LiteLLM and aiokafka ready in {VENV}")
