import logging
import os
import threading
import time

import pytest

from tests.helpers import PATIENT
from tracker.errors import ConfigurationError, SensorGone, SensorReadError
from tracker.measure.sampler import FAILING, LOST, OK, Sampler
from tracker.testing import FakeSensor, fail_always, fail_on, steady


def make(clock, *sensors, **kwargs):
    batches = []
    sampler = Sampler(list(sensors), batches.append, clock=clock, **{**PATIENT, **kwargs})
    return sampler, batches


def test_tick_reads_every_sensor_and_hands_the_batch_to_the_sink(clock):
    a = FakeSensor("gpu:0", trace=steady(100), clock=clock)
    b = FakeSensor("cpu", kind="cpu", trace=steady(10), clock=clock)
    sampler, batches = make(clock, a, b)
    clock.advance(1.0)
    sampler.tick()
    assert [[r.sensor for r in batch] for batch in batches] == [["gpu:0", "cpu"]]
    assert batches[0][0].energy_j == 100.0 and batches[0][0].time_s == clock()


@pytest.mark.parametrize("bad", [0, -1, 0.001, 4000, "1", None, True, float("nan")])
def test_bad_interval_is_a_clear_error(clock, bad):
    with pytest.raises(ConfigurationError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        Sampler([], lambda batch: None, interval_s=bad, clock=clock)


def test_failing_sensor_is_retried_with_back_off_and_one_warning(clock, caplog):
    bad = FakeSensor("gpu:1", clock=clock, fail=fail_always(SensorReadError("driver busy")))
    good = FakeSensor("gpu:0", clock=clock)
    sampler, batches = make(clock, good, bad, max_failures=3)
    with caplog.at_level(logging.INFO, logger="tracker"):
        for _ in range(100):  # 10 s of ticks 0.1 s apart
            clock.advance(0.1)
            sampler.tick()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gpu:1" in warnings[0].getMessage()
    assert sampler.health["gpu:1"].status == FAILING
    # Three at once, then 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s apart (each at the first tick after): 3 + 6 reads.
    assert bad.calls == 9 and sampler.health["gpu:1"].failures == 9
    assert sampler.health["gpu:0"].status == OK
    assert all(len(batch) == 1 for batch in batches)


def test_lost_device_is_reprobed_every_30_s(clock):
    bad = FakeSensor("gpu:1", clock=clock, fail=fail_always(SensorGone("GPU is lost")))
    sampler, _ = make(clock, bad)
    for _ in range(95):
        clock.advance(1.0)
        sampler.tick()
    assert sampler.health["gpu:1"].status == LOST
    assert bad.calls == 4  # at 1, 31, 61 and 91 s


def test_sensor_that_fails_once_recovers(clock, caplog):
    flaky = FakeSensor("gpu:0", clock=clock, fail=fail_on({2}))
    sampler, batches = make(clock, flaky)
    with caplog.at_level(logging.WARNING, logger="tracker"):
        sampler.tick()
        sampler.tick()
        assert sampler.health["gpu:0"].status == FAILING
        sampler.tick()
    assert sampler.health["gpu:0"].status == OK and sampler.health["gpu:0"].failures == 1
    assert len(caplog.records) == 1 and len(batches) == 2


def test_untyped_exceptions_never_escape(clock):
    sensor = FakeSensor("gpu:0", clock=clock, fail=fail_always(ZeroDivisionError("driver bug")))
    sampler, batches = make(clock, sensor)
    assert sampler.tick() == [] and sampler.sample_now() == []
    assert "ZeroDivisionError" in sampler.health["gpu:0"].last_error


def test_failing_sink_does_not_stop_sampling(clock, caplog):
    calls = []

    def sink(batch):
        calls.append(batch)
        raise OSError("disk full")

    sampler = Sampler([FakeSensor(clock=clock)], sink, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tracker"):
        sampler.tick()
        sampler.tick()
    assert len(calls) == 2 and len(caplog.records) == 1


def test_sample_now_skips_a_sensor_busy_on_the_background_thread(clock):
    entered, release = threading.Event(), threading.Event()

    class Hung(FakeSensor):
        def read(self):
            entered.set()
            release.wait(5)
            return super().read()

    hung = Hung("gpu:0", clock=clock)
    quick = FakeSensor("cpu", kind="cpu", clock=clock)
    sampler, batches = make(clock, hung, quick)
    worker = threading.Thread(target=sampler.tick)
    worker.start()
    assert entered.wait(5)
    got = sampler.sample_now()  # must not wait for the hung read
    still_hung = worker.is_alive()
    release.set()
    worker.join()
    assert still_hung
    assert [r.sensor for r in got] == ["cpu"]


def test_slow_sensor_is_then_read_in_the_background_only(clock):
    slow = FakeSensor("gpu:0", clock=clock, block_s=0.05)
    sampler, _ = make(clock, slow, slow_read_s=0.01)
    sampler.tick()
    assert sampler.health["gpu:0"].slow
    calls = slow.calls
    assert sampler.sample_now() == [] and slow.calls == calls


def test_background_thread_samples_and_stops_within_one_interval():
    sensor = FakeSensor("gpu:0", trace=steady(50))
    batches = []
    sampler = Sampler([sensor], batches.append, interval_s=0.01)
    sampler.start()
    assert sampler.running
    deadline = time.monotonic() + 5
    while len(batches) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sampler.stop(timeout_s=1.0)
    assert len(batches) >= 3
    assert not sampler.running


def test_thread_is_a_named_daemon():
    sampler = Sampler([], lambda batch: None, interval_s=0.05)
    sampler.start()
    try:
        thread = next(t for t in threading.enumerate() if t.name == "energy-tracker.sampler")
        assert thread.daemon
    finally:
        sampler.stop()


def test_reading_times_are_stratified_random_within_each_slot(clock):
    sampler = Sampler([], lambda batch: None, interval_s=1.0, clock=clock, jitter=1.0, seed=1)
    offsets = [sampler.deadline(100.0, slot) - 100.0 - slot for slot in range(2000)]
    assert min(offsets) >= 0.0 and max(offsets) < 1.0 and len(set(offsets)) == 2000
    assert sum(offsets) / len(offsets) == pytest.approx(0.5, abs=0.02)
    regular = Sampler([], lambda batch: None, interval_s=1.0, clock=clock, jitter=0.0)
    assert [regular.deadline(0.0, k) for k in range(3)] == [0.5, 1.5, 2.5]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_has_no_sampler(clock):
    sensor = FakeSensor(clock=clock)
    sampler, batches = make(clock, sensor)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: ticking must do nothing
        os.close(read_fd)
        ok = sampler.tick() == [] and sampler.sample_now() == [] and not sampler.running
        os.write(write_fd, b"1" if ok else b"0")
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert sampler.tick() != []


class _HeldRead(FakeSensor):
    """A sensor whose reads block until ``release`` is set (a driver hung in the kernel)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.release, self.reading = threading.Event(), threading.Event()

    def read(self):
        self.reading.set()
        self.release.wait(10.0)
        return super().read()


def test_closing_sensors_does_not_wait_for_a_read_left_behind(caplog):
    sensor = _HeldRead("gpu:0", "gpu", steady(100.0))
    sampler = Sampler([sensor], lambda readings: None, interval_s=0.01)
    sampler.start()
    try:
        assert sensor.reading.wait(5.0)
        assert sampler.stop(timeout_s=0.05) is False  # left behind, with its one warning
        sampler.close_sensors()  # returns at once: the close waits for the read on a thread of its own
        assert not sensor.closed and "leaving it behind" in caplog.text
    finally:
        sensor.release.set()
    for thread in [t for t in threading.enumerate() if t.name in ("energy-tracker.close", "energy-tracker.sampler")]:
        thread.join(5.0)
    assert sensor.closed
