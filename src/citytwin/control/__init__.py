"""Autonomous control: decisions flow back to the physical city — explainable, checked, approved
where it matters, and audited.

- :mod:`.rules` — declarative YAML rules over the twin's state (windows, hysteresis, cooldown,
  active hours, actions), validated on load
- :mod:`.rule_engine` — evaluating rules over readings, incrementally or as a dry run on history
- :mod:`.tasks` — the task life cycle (created → awaiting approval → approved → sent →
  acknowledged → done | failed | expired | rejected) with idempotency, retries and expiry
- :mod:`.base` — the actuator contract; :mod:`.log` — the logging fake; :mod:`.mqtt_` — the MQTT
  actuator (QoS 1 tasks to ``<prefix>/<id>``, acknowledgements on ``<prefix>/<id>/ack``)
- :mod:`.audit` — an append-only, hash-chained log of every decision, and its verification
- :mod:`.config` — the control file: rules, actuator entries (URL, rate limit, delivery), dry run
- :mod:`.checks` — simulate-before-act: a task's declared scenario check (TSTT limit)
- :mod:`.alerts` — what people are told (log, webhook, the server's bus)
- :mod:`.dispatcher` — the controller: readings → rules → alerts and tasks → actuators → audit,
  with approval, checks, rate limits, dry runs and manual overrides
"""
