"""A Prometheus endpoint (and a push gateway) for each row's energy, CO2e and power, off by default.

Names follow the OpenTelemetry hardware semantic conventions where they fit (``hw.energy``, a
counter in J, and ``hw.power``, a gauge in W, with ``hw.type`` and ``hw.id``), as a Prometheus
exporter writes them: ``hw_energy_joules_total`` and ``hw_power_watts``; the CO2e, which has no
convention, is ``energy_tracker_co2e_kilograms_total``. Every series is labelled with the run, the
job id, the host and the rank that measured it. The counters move at each row written (the
``epochs.csv`` figures, so ``increase()`` over a run is the rows' energy); the power gauge is each
device's mean power over its last row. The node's own meter (kind ``node``) measures the whole machine, the
components with it, so it goes to ``hw.host.energy`` and ``hw.host.power`` (``hw_host_energy_joules_total``,
``hw_host_power_watts``, labelled ``hw_id``), which the conventions keep apart from ``hw.energy`` "to
prevent summing up overlapping values".

A tracker opens a socket only when ``prometheus_port`` is given, and pushes only when
``prometheus_pushgateway`` is. Under a launcher, each rank serves its own rows on
``prometheus_port + local rank`` (never a port clash between the ranks of a node).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError
from tracker.logs.schema import DeviceRecord, EpochRecord

ENERGY, POWER, CO2 = "hw_energy", "hw_power", "energy_tracker_co2e"
HOST_ENERGY, HOST_POWER = "hw_host_energy", "hw_host_power"  # the whole machine (OpenTelemetry hw.host.*)
NODE = "node"
LABELS = ("run", "job_id", "host", "rank")  # not "job": the push gateway's grouping label
# OpenTelemetry's hw.type for each of our kinds (the memory modules are "memory").
HW_TYPE = {"gpu": "gpu", "cpu": "cpu", "ram": "memory"}


def check_port(value: Any, name: str) -> tuple[str, int] | None:
    """``prometheus_port``: a port (all interfaces) or ``"HOST:PORT"``; ``None`` (default) opens nothing.

    Its own answer, ``(host, port)``, is taken again as it is (``Config.replace`` checks every option anew).

    Raises:
        ConfigurationError: not a port from 1 to 65535, or not ``HOST:PORT``.
    """
    if value is None:
        return None
    host, port = _host_and_port(value)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    valid_host = isinstance(host, str) and host
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536 or not valid_host:
        raise ConfigurationError(
            f"{name}={value!r}: give the port to serve the metrics on, 1 to 65535 (e.g. {name}=9400), or "
            f"'HOST:PORT' (e.g. '127.0.0.1:9400'); None serves nothing"
        )
    return host.strip("[]"), port


def _host_and_port(value: Any) -> tuple[Any, Any]:
    """The host and port given, as given (checked by the caller): ``"HOST:PORT"``, ``(host, port)`` or a port."""
    if isinstance(value, tuple) and len(value) == 2:
        return value
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        return host, port
    return "0.0.0.0", value


def check_gateway(value: Any, name: str) -> str | None:
    """``prometheus_pushgateway``: the push gateway's URL, or ``None``.

    Raises:
        ConfigurationError: not an http(s) URL.
    """
    if value is None or (isinstance(value, str) and value.startswith(("http://", "https://"))):
        return value
    raise ConfigurationError(f"{name}={value!r}: give the push gateway's URL, e.g. 'http://127.0.0.1:9091', or None")


def claim(address: tuple[str, int] | None, local_rank: int) -> tuple[str, int] | None:
    """This rank's address (the port plus the local rank), checked free now.

    Raises:
        ConfigurationError: ``prometheus_client`` is missing, or the port is taken.
    """
    if address is None:
        return None
    import socket  # here, not at import: a tracker without prometheus_port never loads the network module

    need_client()
    host, port = address[0], address[1] + local_rank
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            rank = f" (prometheus_port {address[1]} + local rank {local_rank})" if local_rank else ""
            raise ConfigurationError(
                f"prometheus_port: {host}:{port}{rank} cannot be served ({exc.strerror}); give a free port, "
                "e.g. prometheus_port=9400, ranks taking the ports after it"
            ) from None
    return host, port


def need_client() -> None:
    """Raises ConfigurationError unless ``prometheus_client`` is installed."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigurationError(
            "prometheus_port/prometheus_pushgateway need prometheus_client: "
            "pip install 'training-energy-tracker[prometheus]'"
        )


class Exporter:
    """Counters and gauges in a registry of their own, served over HTTP and/or pushed (a sink of the sink thread).

    Args:
        address: where to serve (``None``: no endpoint); gateway: the push gateway's URL (``None``: no push).
        run, job: the labels of every series (job ``""`` when unknown); rank: this process's, the push's group.
    """

    name = "prometheus"

    def __init__(self, address: tuple[str, int] | None, gateway: str | None, run: str, job: str, rank: int) -> None:
        import prometheus_client as client

        self.address, self.gateway, self.run, self.job, self.rank = address, gateway, run, job, rank
        self.registry = client.CollectorRegistry()
        labels = (*LABELS, "hw_type", "hw_id")
        doc = "energy of the device in the rows written, J (OpenTelemetry hw.energy)"
        self.energy = client.Counter(ENERGY, doc, labels, unit="joules", registry=self.registry)
        doc = "mean power of the device over its last row, W (OpenTelemetry hw.power)"
        self.power = client.Gauge(POWER, doc, labels, unit="watts", registry=self.registry)
        doc = "energy of the whole machine by its own meter in the rows written, J (OpenTelemetry hw.host.energy)"
        self.host_energy = client.Counter(HOST_ENERGY, doc, (*LABELS, "hw_id"), unit="joules", registry=self.registry)
        doc = "mean power of the whole machine by its own meter over its last row, W (OpenTelemetry hw.host.power)"
        self.host_power = client.Gauge(HOST_POWER, doc, (*LABELS, "hw_id"), unit="watts", registry=self.registry)
        doc = "CO2e of the rows written, kg (energy x PUE x grid intensity)"
        self.co2 = client.Counter(CO2, doc, LABELS, unit="kilograms", registry=self.registry)
        self._server: Any = None
        self._thread: Any = None

    def open(self, run: Any) -> None:
        """Serve the registry (when an address is given); push the series at 0 (when a gateway is given)."""
        if self.address is not None:
            from prometheus_client import start_http_server

            self._server, self._thread = start_http_server(self.address[1], self.address[0], self.registry)
        self.push()

    def start_series(self, host: str, rank: int, devices: Sequence[tuple[str, str]]) -> None:
        """Every series at 0 before the first row, so that ``increase()`` counts the first row's energy too."""
        for kind, sensor in devices:
            energy, _, labels = self._series(kind, host, rank, sensor)
            energy.labels(*labels)
        self.co2.labels(self.run, self.job, host, str(rank))

    def write_row(self, row: EpochRecord, devices: Sequence[DeviceRecord]) -> None:
        """Count the row's energy per device and its CO2e, set the power gauges; push when a gateway is given."""
        for d in devices:
            energy, power, labels = self._series(d.kind, d.host, d.rank, d.sensor)
            energy.labels(*labels).inc(max(0.0, d.energy_kwh * J_PER_KWH))
            if d.power_mean_w is not None:
                power.labels(*labels).set(d.power_mean_w)
        hosts = {(d.host, d.rank) for d in devices} or {("", 0)}
        host, rank = min(hosts, key=lambda h: h[1])
        self.co2.labels(self.run, self.job, host, str(rank)).inc(max(0.0, row.co2_kg))
        self.push()

    def _series(self, kind: str, host: str, rank: int, sensor: str) -> tuple[Any, Any, tuple[str, ...]]:
        """A device's energy counter, power gauge and labels: ``hw.host.*`` for the node's own meter, else ``hw.*``."""
        if kind == NODE:
            return self.host_energy, self.host_power, (self.run, self.job, host, str(rank), sensor)
        return self.energy, self.power, (self.run, self.job, host, str(rank), HW_TYPE.get(kind, kind), sensor)

    def push(self) -> None:
        """Push every series to the gateway, grouped by run and rank, so ranks never replace each other's."""
        if self.gateway is not None:
            from prometheus_client import push_to_gateway

            push_to_gateway(self.gateway, job="energy-tracker", registry=self.registry,
                            grouping_key={"run": self.run, "rank": str(self.rank)})  # fmt: skip

    def close(self) -> None:
        """Push once more and stop serving."""
        self.push()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5.0)
