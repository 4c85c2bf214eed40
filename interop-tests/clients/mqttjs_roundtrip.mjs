// MQTT.js over WebSocket against the broker: QoS 0 and 1, wildcards, retained.
// Usage: node mqttjs_roundtrip.mjs PORT. Exits 0 when every check passes.

import mqtt from "mqtt";

const port = Number(process.argv[2]);
const url = `ws://127.0.0.1:${port}/mqtt`;
const waitMs = 10_000;

function fail(message) {
  console.error(`MQTT.js: ${message}`);
  process.exit(1);
}

function withTimeout(promise, what) {
  const timer = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no ${what} within ${waitMs} ms`)), waitMs),
  );
  return Promise.race([promise, timer]);
}

function nextMessage(client) {
  return new Promise((resolve) =>
    client.once("message", (topic, payload, packet) => resolve({ topic, payload, packet })),
  );
}

try {
  const publisher = await withTimeout(mqtt.connectAsync(url, { clientId: "mqttjs-pub" }), "CONNACK");
  await withTimeout(publisher.publishAsync("mqttjs/state", "on", { qos: 1, retain: true }), "PUBACK");

  const subscriber = await withTimeout(mqtt.connectAsync(url, { clientId: "mqttjs-sub" }), "CONNACK");
  const retained = nextMessage(subscriber);
  await withTimeout(subscriber.subscribeAsync("mqttjs/+", { qos: 1 }), "SUBACK");
  const first = await withTimeout(retained, "retained message");
  if (first.topic !== "mqttjs/state" || first.payload.toString() !== "on" || !first.packet.retain) {
    fail(`retained message wrong: ${first.topic} ${first.payload} retain=${first.packet.retain}`);
  }

  const live = nextMessage(subscriber);
  await publisher.publishAsync("mqttjs/event", "hello", { qos: 1 });
  const message = await withTimeout(live, "live message");
  if (message.topic !== "mqttjs/event" || message.payload.toString() !== "hello" || message.packet.qos !== 1) {
    fail(`live message wrong: ${message.topic} ${message.payload} qos=${message.packet.qos}`);
  }

  await publisher.publishAsync("mqttjs/state", "", { qos: 1, retain: true });
  await publisher.endAsync();
  await subscriber.endAsync();
  console.log("MQTT.js: all checks passed");
  process.exit(0);
} catch (error) {
  fail(error.message);
}
