"""Print what a Home Assistant connected to this broker would discover (make demo uses it).

    mqtt-discovered.py HOST PORT [DISCOVERY_PREFIX]

Subscribes to the retained discovery configs, waits until none has come for a second (at most
15 s for the first), and prints one line per entity: component, name, state topic.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main(host: str, port: int, prefix: str = "homeassistant") -> int:
    found: dict[str, dict[str, object]] = {}
    last = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rva-demo-{time.time():.0f}")

    def on_connect(c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
        c.subscribe(f"{prefix}/+/+/+/config")

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            found[msg.topic] = json.loads(msg.payload)
            last.set()

    client.on_connect, client.on_message = on_connect, on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        print(f"  (no broker at {host}:{port}: {exc})")
        return 1
    client.loop_start()
    got_any = last.wait(15)
    while got_any and last.wait(1):
        last.clear()
    client.disconnect()
    client.loop_stop()
    if not found:
        print(f"  (nothing under {prefix}/ yet: see `journalctl`/the rva mqtt output)")
        return 1
    for topic, body in sorted(found.items()):
        component = topic.split("/")[1]
        state = body.get("state_topic") or body.get("topic")
        print(f"  {component:13} {body.get('name')!s:32} {state}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:]))
    except KeyboardInterrupt:  # Ctrl-C while make demo starts: the demo stops, no traceback
        sys.exit(130)
