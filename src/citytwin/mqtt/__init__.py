"""MQTT: the broker citytwin runs for itself, broker URLs, and the durable ingest subscriber.

:mod:`citytwin.mqtt.broker` starts mosquitto on loopback with citytwin's own configuration (tests,
benchmarks and the demo's production mode use it); :func:`parse_broker_url` reads the
``mqtt://host:port`` URLs every MQTT option takes; :mod:`citytwin.mqtt.ingest` is
``citytwin ingest mqtt`` (over the small client in :mod:`citytwin.mqtt.client`).
"""

from citytwin.mqtt.broker import BrokerAddress, Mosquitto, find_mosquitto, parse_broker_url

__all__ = ["BrokerAddress", "Mosquitto", "find_mosquitto", "parse_broker_url"]
