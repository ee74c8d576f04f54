"""A bounded load run against ``qa-headpose serve`` with locust (numbers printed, not asserted).

Each simulated user posts the sample face (JPEG) and asks /v1/health, with a short think time:

    qa-headpose serve --threads 2 &
    locust -f tools/serve_locust.py --headless -u 50 -r 50 -t 30s --host http://127.0.0.1:8000 --only-summary

tests/test_hostile.py::test_locust_load_run runs it against a fresh server (marked slow; part of every run).
"""

from __future__ import annotations

from pathlib import Path

from locust import HttpUser, between, task

SAMPLE = (Path(__file__).resolve().parents[1] / "qa_headpose" / "assets" / "astronaut.jpg").read_bytes()


class PoseClient(HttpUser):
    wait_time = between(0.1, 0.5)

    @task(4)
    def poses(self) -> None:
        with self.client.post(
            "/v1/poses", data=SAMPLE, headers={"Content-Type": "image/jpeg"}, catch_response=True
        ) as resp:
            if resp.status_code == 503:  # the documented answer of a full server: counted apart, not a failure
                resp.request_meta["name"] = "/v1/poses (503 busy)"
                resp.success()
            elif resp.status_code != 200 or len(resp.json().get("faces", [])) != 1:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")

    @task(1)
    def health(self) -> None:
        self.client.get("/v1/health")
