"""InProcessBus: fan-out, MQTT-style patterns, drop-oldest overflow, publishing from threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from citytwin.bus import open_bus, topic_matches
from citytwin.bus.base import Message, Subscription, check_pattern
from citytwin.bus.memory import InProcessBus
from citytwin.errors import UnknownBackendError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import Ingestor, ingest
from citytwin.store import ObservationFrame, open_store

TIMEOUT = 5.0


async def _take(subscription: Subscription, count: int) -> list[tuple[str, Message]]:
    async def collect() -> list[tuple[str, Message]]:
        return [await anext(subscription) for _ in range(count)]

    return await asyncio.wait_for(collect(), TIMEOUT)


async def _drain(subscription: Subscription) -> list[tuple[str, Message]]:
    """Everything queued, after the subscription was closed."""

    async def collect() -> list[tuple[str, Message]]:
        return [item async for item in subscription]

    return await asyncio.wait_for(collect(), TIMEOUT)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("observations/#", "observations/sdot", True),
        ("observations/#", "observations", True),  # MQTT: '#' also matches the parent level
        ("observations/+", "observations/sdot", True),
        ("observations/+", "observations/sdot/raw", False),
        ("observations/sdot", "observations/kma", False),
        ("+/sdot", "observations/sdot", True),
        ("#", "control/actuators/pump-3", True),
        ("observations", "observations/sdot", False),
    ],
)
def test_topic_patterns_follow_mqtt(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["observations/#/sdot", "observations/sd+", "obs#"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        check_pattern(pattern)


def test_every_subscriber_receives_every_matching_message() -> None:
    async def scenario() -> None:
        with InProcessBus() as bus:
            first, second = bus.subscribe("observations/#"), bus.subscribe("observations/#")
            bus.publish("observations/sdot", {"n": 1})
            bus.publish("observations/kma", {"n": 2})
            expected = [("observations/sdot", {"n": 1}), ("observations/kma", {"n": 2})]
            assert await _take(first, 2) == expected
            assert await _take(second, 2) == expected

    asyncio.run(scenario())


def test_patterns_filter_what_a_subscriber_sees() -> None:
    async def scenario() -> None:
        with InProcessBus() as bus:
            sdot = bus.subscribe("observations/sdot")
            control = bus.subscribe("control/+")
            bus.publish("observations/kma", {"n": 1})
            bus.publish("control/pump", {"n": 2})
            bus.publish("observations/sdot", {"n": 3})
            sdot.close()
            control.close()
            assert await _drain(sdot) == [("observations/sdot", {"n": 3})]
            assert await _drain(control) == [("control/pump", {"n": 2})]

    asyncio.run(scenario())


def test_a_full_queue_drops_the_oldest_and_counts() -> None:
    async def scenario() -> None:
        with InProcessBus() as bus:
            slow = bus.subscribe("observations/#", maxsize=3)
            for n in range(5):
                bus.publish("observations/sdot", {"n": n})
            assert slow.dropped == 2
            slow.close()
            assert [m for _, m in await _drain(slow)] == [{"n": 2}, {"n": 3}, {"n": 4}]

    asyncio.run(scenario())


@pytest.mark.parametrize("maxsize", [4_000, 8])
def test_publishing_from_a_thread_reaches_an_asyncio_consumer(maxsize: int) -> None:
    """Ordered, never duplicated; with a small queue, what is missing is what was counted."""
    total = 2_000

    async def scenario() -> tuple[list[int], int]:
        with InProcessBus() as bus:
            subscription = bus.subscribe("observations/#", maxsize=maxsize)

            def produce() -> None:
                for n in range(total):
                    bus.publish("observations/sdot", {"n": n})
                bus.publish("observations/end", {"n": total})

            producer = threading.Thread(target=produce)
            producer.start()
            received: list[int] = []

            async def consume() -> None:
                async for topic, message in subscription:
                    assert isinstance(message, dict)
                    if topic == "observations/end":
                        return
                    received.append(int(message["n"]))
                    if len(received) % 7 == 0:
                        await asyncio.sleep(0)  # let the producer get ahead

            await asyncio.wait_for(consume(), TIMEOUT)
            producer.join(TIMEOUT)
            return received, subscription.dropped

    received, dropped = asyncio.run(scenario())
    assert received == sorted(set(received))
    assert len(received) + dropped == total
    if maxsize >= total:
        assert received == list(range(total))
        assert dropped == 0


def test_closing_the_bus_ends_subscriptions_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        bus = InProcessBus()
        subscription = bus.subscribe("#")
        waiting = asyncio.ensure_future(_drain(subscription))
        await asyncio.sleep(0)
        bus.close()
        assert await waiting == []
        assert bus.subscribers == 0
        with pytest.raises(RuntimeError, match="closed"):
            bus.subscribe("#")

    asyncio.run(scenario())


def test_registry_names_the_valid_buses() -> None:
    with open_bus() as bus:
        assert isinstance(bus, InProcessBus)
        assert bus.lossy
        assert not bus.distributed
        assert not bus.retains
    with pytest.raises(UnknownBackendError, match="expected one of: memory"):
        open_bus("kafka")


def test_the_pipeline_announces_new_observations_once(tmp_path: Path) -> None:
    """One frame per batch with new rows; a re-ingest of the same file announces nothing."""
    path = tmp_path / "sdot.csv"
    path.write_text(
        "시리얼,미세먼지2.5(초미세먼지),기온,측정시간\n"
        "V02Q1940612,12,1234,202003150000\nV02Q1940612,14,1240,202003150002\n",
        encoding="utf-8",
    )

    async def scenario() -> list[tuple[str, Message]]:
        with InProcessBus() as bus, open_store("memory://") as store:
            subscription = bus.subscribe("observations/#")
            ingestor = Ingestor(store, bus=bus)
            first = ingest(read_feed("sdot", str(path)), store, ingestor=ingestor)
            again = ingest(read_feed("sdot", str(path)), store, ingestor=ingestor)
            assert (first.feeds["sdot"].stored, again.feeds["sdot"].stored) == (4, 0)
            subscription.close()
            return await _drain(subscription)

    ((topic, frame),) = asyncio.run(scenario())
    assert topic == "observations/sdot"
    assert isinstance(frame, ObservationFrame)
    assert sorted(frame.result.tolist()) == pytest.approx([12.0, 14.0, 23.4, 24.0])
