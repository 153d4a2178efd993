"""The Prometheus endpoint and push gateway, scraped by a real Prometheus server (Debian's ``prometheus``).

A run on a fake GPU of known power, on the real clock; Prometheus scrapes every 500 ms (loaded CI machines; what a
scrape every 100 ms costs the training thread is measured in ``bench/``, ``--only prometheus``), and
``increase()`` over the run, asked through its HTTP API, must be the rows' GPU energy within 1 %.
Skipped where the ``prometheus`` binary (and, for the gateway, ``prometheus-pushgateway``) or
``prometheus_client`` is missing. Loopback addresses only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.helpers import free_port, wait_http
from tracker import EnergyTracker
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError
from tracker.testing import FakeSensor, steady

pytest.importorskip("prometheus_client")
GPU = 'hw_energy_joules_total{hw_type="gpu",job="%s"}'  # the scrape job: the tracker's endpoint, or the gateway


def query(api: str, expr: str, at: float | None = None) -> list:
    params = {"query": expr, **({"time": repr(at)} if at is not None else {})}
    with urllib.request.urlopen(f"{api}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=5.0) as reply:
        return json.load(reply)["data"]["result"]


def value(api: str, expr: str, at: float | None = None) -> float | None:
    result = query(api, expr, at)
    return sum(float(r["value"][1]) for r in result) if result else None


@pytest.fixture
def prometheus(tmp_path):
    """Start ``prometheus`` (and a push gateway) on loopback ports; yields ``(api, exporter port, gateway url)``."""
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus binary (apt-get install prometheus)")
    port, api_port, gateway_port = free_port(), free_port(), free_port()
    gateway = shutil.which("prometheus-pushgateway")
    targets = [("tracker", port, False), *([("gateway", gateway_port, True)] if gateway else [])]
    jobs = "".join(f"  - job_name: {name}\n    honor_labels: {str(honor).lower()}\n    static_configs:\n"
                   f"      - targets: ['127.0.0.1:{p}']\n" for name, p, honor in targets)  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\nscrape_configs:\n{jobs}")
    processes = []
    if gateway:
        processes.append(subprocess.Popen([gateway, f"--web.listen-address=127.0.0.1:{gateway_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
    command = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{api_port}"]  # fmt: skip
    processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/-/ready")
        if gateway:
            wait_http(f"http://127.0.0.1:{gateway_port}/-/ready")
        yield api, port, f"http://127.0.0.1:{gateway_port}" if gateway else None
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def run_and_compare(api: str, job: str, **options) -> list[dict]:
    gpu = GPU % job
    rows = []
    clock = time.monotonic
    sensors = [FakeSensor("gpu:0", "gpu", steady(250.0), clock), FakeSensor("cpu", "cpu", steady(40.0), clock)]
    energy = EnergyTracker(None, sensors=sensors, carbon_intensity_g_per_kwh=400.0, interval_s=0.1,
                           on_row=lambda row, devices: rows.append(row), **options)  # fmt: skip
    with energy:
        poll(lambda: value(api, gpu) is not None, "a scrape of the counters", api)
        for epoch in range(3):
            with energy.epoch(epoch):
                time.sleep(1.0)
        # Prometheus' last sample holds every row so far (an ``other`` row may come while we look)
        poll(lambda: scraped_all(api, rows, gpu), "the last row scraped", api)
        expected_j, last = scraped_all(api, rows, gpu)
        (series,) = query(api, f"{gpu}[10m]", at=last)
        (first_s, first_j) = float(series["values"][0][0]), float(series["values"][0][1])
        # over the run as Prometheus saw it, from its first sample (rows before it are in that sample)
        increased = value(api, f"increase({gpu}[{round((last - first_s) * 1000) + 1}ms])", at=last)
        labels = [r["metric"] for r in query(api, gpu)]
    assert expected_j - first_j > 250.0 * 3 * 0.9  # the fake GPU's 250 W over the 3 s of epochs, at least
    assert increased == pytest.approx(expected_j - first_j, rel=0.01)
    return labels


def scraped_all(api: str, rows: list, gpu: str) -> tuple[float, float] | None:
    """``(the rows' GPU energy in J, the last sample's time)`` when the last sample holds every row, else None."""
    expected_j = sum(r.gpu_kwh for r in list(rows)) * J_PER_KWH
    (sample,) = query(api, gpu) or [None]
    if sample is None or abs(float(sample["value"][1]) - expected_j) > 1e-9 * expected_j:
        return None
    return expected_j, float(query(api, f"timestamp({gpu})")[0]["value"][1])


def poll(condition, what: str, api: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            with urllib.request.urlopen(f"{api}/api/v1/targets", timeout=5.0) as reply:
                targets = [
                    (t["scrapeUrl"], t["health"], t["lastError"]) for t in json.load(reply)["data"]["activeTargets"]
                ]
            raise AssertionError(f"Prometheus never showed {what}; its targets: {targets}")
        time.sleep(0.05)


def test_a_real_prometheus_scrapes_the_rows_energy(prometheus):
    api, port, _ = prometheus
    (labels,) = run_and_compare(api, "tracker", prometheus_port=f"127.0.0.1:{port}", job_id="4242")
    assert (labels["job_id"], labels["hw_id"], labels["rank"], labels["job"]) == ("4242", "gpu:0", "0", "tracker")


def test_the_push_gateway_path(prometheus):
    api, _, gateway = prometheus
    if gateway is None:
        pytest.skip("no prometheus-pushgateway binary")
    (labels,) = run_and_compare(api, "energy-tracker", prometheus_pushgateway=gateway)
    assert (labels["hw_type"], labels["job"]) == ("gpu", "energy-tracker")  # the push's job (honor_labels)


def test_a_taken_port_is_a_configuration_error_at_construction():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} cannot be served"):
            EnergyTracker(None, sensors=[], prometheus_port=f"127.0.0.1:{port}")


def test_a_config_with_a_port_is_checked_again_unchanged():
    from tracker import Config

    # Config.replace checks every option anew (the Lightning and Hugging Face callbacks replace options)
    for given, served in ((9400, ("0.0.0.0", 9400)), ("127.0.0.1:9400", ("127.0.0.1", 9400))):
        assert Config(prometheus_port=given).replace(pue=1.2).prometheus_port == served
    with pytest.raises(ConfigurationError, match="give the port"):
        Config(prometheus_port=(1, 2))


def test_no_socket_unless_asked(tmp_path):
    assert EnergyTracker(None, sensors=[]).config.prometheus_port is None
    with pytest.raises(ConfigurationError, match="give the port to serve the metrics on"):
        EnergyTracker(None, sensors=[], prometheus_port=70000)
