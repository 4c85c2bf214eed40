"""paho-mqtt over WebSocket against the broker: QoS 0 and 1, retained.

Usage: python3 paho_roundtrip.py PORT. Exits 0 when every check passes and
prints the failed check otherwise.
"""

import sys
import threading

import paho.mqtt.client as mqtt

WAIT_SECONDS = 10


def make_client(port, client_id, received):
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        transport="websockets",
        protocol=mqtt.MQTTv311,
    )
    client.ws_set_options(path="/mqtt")
    connected = threading.Event()
    subscribed = threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: connected.set()
    client.on_subscribe = lambda c, u, mid, reasons, props: subscribed.set()
    client.on_message = lambda c, u, message: received.append(message) or arrived.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not connected.wait(WAIT_SECONDS):
        sys.exit(f"{client_id}: no CONNACK within {WAIT_SECONDS} s")
    return client, subscribed


arrived = threading.Event()


def wait_for(received, count, what):
    while len(received) < count:
        arrived.clear()
        if len(received) >= count:
            break
        if not arrived.wait(WAIT_SECONDS):
            sys.exit(f"no {what} within {WAIT_SECONDS} s; received {len(received)} messages")


def main():
    port = int(sys.argv[1])
    publisher, _ = make_client(port, "paho-pub", [])
    info = publisher.publish("paho/retained", b"kept", qos=1, retain=True)
    info.wait_for_publish(WAIT_SECONDS)
    if not info.is_published():
        sys.exit("retained QoS 1 PUBLISH was not acknowledged")

    received = []
    subscriber, subscribed = make_client(port, "paho-sub", received)
    subscriber.subscribe("paho/#", qos=1)
    if not subscribed.wait(WAIT_SECONDS):
        sys.exit("no SUBACK")
    wait_for(received, 1, "retained message")
    first = received[0]
    if (first.topic, first.payload, first.retain) != ("paho/retained", b"kept", True):
        sys.exit(f"retained message wrong: {first.topic} {first.payload!r} retain={first.retain}")

    publisher.publish("paho/live", b"zero", qos=0)
    publisher.publish("paho/live", b"one", qos=1)
    wait_for(received, 3, "live messages")
    live = [(m.topic, m.payload, m.qos) for m in received[1:3]]
    if live != [("paho/live", b"zero", 0), ("paho/live", b"one", 1)]:
        sys.exit(f"live messages wrong or out of order: {live}")

    publisher.publish("paho/retained", b"", qos=1, retain=True).wait_for_publish(WAIT_SECONDS)
    for client in (publisher, subscriber):
        client.disconnect()
        client.loop_stop()
    print("paho-mqtt: all checks passed")


if __name__ == "__main__":
    main()
