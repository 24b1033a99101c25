import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import type { Data, List, StoredEvent } from '../helpers/fixtures.js';
import { connectDevice, freePort, isReply, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, type Owner } from '../helpers/telemetry-fixtures.js';
import { connect, wsUrl, type WsClient } from '../helpers/ws-client.js';

type Kind = 'readings' | 'heartbeat' | 'command_result' | 'firmware_progress';

/** One device message, as a transport-neutral body; `raw` sends the text as it is. */
interface Step {
  name: string;
  kind: Kind;
  body: Record<string, unknown> | { raw: string };
}

const STEPS: Step[] = [
  { name: 'readings, object form', kind: 'readings', body: { sensor_readings: { temperature: 21.5, humidity: 40 } } },
  { name: 'readings, bad value', kind: 'readings', body: { sensor_readings: { temperature: 'hot' } } },
  { name: 'readings, list without value', kind: 'readings', body: { sensor_readings: [{ sensor_type: 'pressure' }] } },
  { name: 'readings, list form', kind: 'readings', body: { sensor_readings: [{ sensor_type: 'pressure', value: 1013, unit: 'hPa' }] } },
  { name: 'readings, __proto__', kind: 'readings', body: { raw: '{"sensor_readings":{"t":1},"device_status":{"__proto__":{"admin":true}}}' } },
  { name: 'readings, not JSON', kind: 'readings', body: { raw: '{"sensor_readings":' } },
  { name: 'heartbeat', kind: 'heartbeat', body: { firmware_version: '1.0.1', metrics: { cpu: 0.3 } } },
  { name: 'heartbeat, bad firmware', kind: 'heartbeat', body: { firmware_version: 5 } },
  { name: 'state report, bad status', kind: 'heartbeat', body: { device_status: 5 } },
  { name: 'state report', kind: 'heartbeat', body: { device_status: { status: 'maintenance', battery: 80 } } },
  { name: 'command result, bad status', kind: 'command_result', body: { status: 'maybe' } },
  { name: 'command result', kind: 'command_result', body: { status: 'executed', response: { ok: true } } },
  { name: 'command result, second one', kind: 'command_result', body: { status: 'failed' } },
  { name: 'firmware progress, bad status', kind: 'firmware_progress', body: { version: '2.0.0', status: 'teleporting' } },
  { name: 'firmware progress', kind: 'firmware_progress', body: { version: '2.0.0', status: 'downloading' } },
];

/** What a transport answered: accepted, or the error code. */
type Outcome = 'accepted' | string;

interface Transport {
  name: string;
  /** Connects (if it holds a connection) with the command queued before. */
  open(device: { id: string; token: string }): Promise<void>;
  send(step: Step, deviceId: string, commandId: string): Promise<Outcome>;
  close(): Promise<void>;
}

const text = (body: Step['body']): string => ('raw' in body && typeof body.raw === 'string' ? body.raw : JSON.stringify(body));

describe('one gateway: the same device messages through HTTP, /ws/device and MQTT', () => {
  let server: TestServer;
  let mqttUrl: string;
  const api = client(() => server.url);
  let owner: Owner;

  beforeAll(async () => {
    const port = await freePort();
    server = await startTestServer({ MQTT_PORT: String(port) });
    mqttUrl = `mqtt://127.0.0.1:${port}`;
    await registerUser(api, 'parityadmin');
    owner = await registerUser(api, 'parityowner');
  });
  afterAll(async () => server.close());

  const http = (): Transport => {
    let token = '';
    const paths: Record<Kind, (id: string, commandId: string) => string> = {
      readings: (id) => `/api/devices/${id}/data`,
      heartbeat: (id) => `/api/devices/${id}/heartbeat`,
      command_result: (id, commandId) => `/api/devices/${id}/commands/${commandId}/result`,
      firmware_progress: (id) => `/api/devices/${id}/firmware/progress`,
    };
    return {
      name: 'http',
      async open(device) {
        token = device.token;
        // A polling device fetches its pending commands; they become sent, as a push makes them.
        expect((await api.get(`/api/devices/${device.id}/commands/pending`, { token })).status).toBe(200);
      },
      async send(step, deviceId, commandId) {
        const answer = await fetch(`${server.url}${paths[step.kind](deviceId, commandId)}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: text(step.body) });
        const body = (await answer.json()) as { error?: { code: string } };
        return answer.status < 300 ? 'accepted' : body.error!.code;
      },
      async close() {},
    };
  };

  const socket = (): Transport => {
    let ws: WsClient;
    let n = 0;
    return {
      name: 'ws',
      async open(device) {
        ws = await connect(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.token)}`));
        await ws.next((m) => m.type === 'command');
      },
      async send(step, _deviceId, commandId) {
        const id = `m${++n}`;
        const extra = step.kind === 'command_result' ? `"command_id":${JSON.stringify(commandId)},` : '';
        const raw = text(step.body);
        // A frame is the body tagged with its type (and id); a broken body stays broken.
        ws.sendRaw(raw.startsWith('{') ? `{"type":"${step.kind}","id":"${id}",${extra}${raw.slice(1)}` : raw);
        const answer = await ws.next((m) => m.type === 'ack' || m.type === 'error');
        return answer.type === 'ack' ? 'accepted' : (answer.code as string);
      },
      close: async () => void (await ws.close()),
    };
  };

  const mqtt = (): Transport => {
    let c: DeviceMqtt;
    const topics: Record<Kind, (id: string, commandId: string) => string> = {
      readings: (id) => `devices/${id}/telemetry`,
      heartbeat: (id) => `devices/${id}/heartbeat`,
      command_result: (id, commandId) => `devices/${id}/commands/${commandId}/result`,
      firmware_progress: (id) => `devices/${id}/firmware/progress`,
    };
    let deviceId = '';
    return {
      name: 'mqtt',
      async open(device) {
        deviceId = device.id;
        c = await connectDevice(mqttUrl, device);
        await c.next((m) => m.topic.startsWith(`devices/${device.id}/commands/`));
      },
      async send(step, id, commandId) {
        await c.publish(topics[step.kind](id, commandId), text(step.body));
        const answer = await c.next(isReply(deviceId));
        return answer.body.type === 'ack' ? 'accepted' : (answer.body.code as string);
      },
      close: () => c.end(),
    };
  };

  /** The device's events, with its own ids and the log's bookkeeping taken out. */
  const eventsOf = async (deviceId: string, commandId: string) => {
    const answer = await api.get<List<StoredEvent>>(`/api/events?device_id=${deviceId}&limit=500`, { token: owner.token });
    expect(answer.status).toBe(200);
    return answer.body.data
      .filter((e) => e.type !== 'device.registered' && e.type !== 'command.queued')
      .map((e) => JSON.parse(JSON.stringify({ type: e.type, data: e.data }).replaceAll(deviceId, '<device>').replaceAll(commandId, '<command>')) as unknown);
  };

  it('answers every message alike and records the same events', async () => {
    const results: Record<string, { outcomes: Record<string, Outcome>; events: unknown[] }> = {};
    for (const transport of [http(), socket(), mqtt()]) {
      const device = await deviceOf(api, owner);
      const queued = await api.post<Data<{ id: string }>>(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: owner.token });
      const commandId = queued.body.data.id;
      await transport.open(device);
      const outcomes: Record<string, Outcome> = {};
      for (const step of STEPS) outcomes[step.name] = await transport.send(step, device.id, commandId);
      await transport.close();
      results[transport.name] = { outcomes, events: (await eventsOf(device.id, commandId)).filter((e) => !/came_online|went_offline/.test(JSON.stringify(e))) };
    }
    expect(results.http!.outcomes).toEqual({
      'readings, object form': 'accepted',
      'readings, list form': 'accepted',
      heartbeat: 'accepted',
      'state report': 'accepted',
      'command result': 'accepted',
      'firmware progress': 'accepted',
      'readings, bad value': 'validation_failed',
      'readings, list without value': 'validation_failed',
      'readings, __proto__': 'validation_failed',
      'readings, not JSON': 'invalid_json',
      'heartbeat, bad firmware': 'validation_failed',
      'state report, bad status': 'validation_failed',
      'command result, bad status': 'validation_failed',
      'command result, second one': 'conflict',
      'firmware progress, bad status': 'validation_failed',
    });
    expect(results.ws!.outcomes).toEqual(results.http!.outcomes);
    expect(results.mqtt!.outcomes).toEqual(results.http!.outcomes);
    const types = results.http!.events.map((e) => (e as { type: string }).type);
    expect(types).toEqual(['command.sent', 'readings.recorded', 'readings.recorded', 'device.heartbeat', 'device.heartbeat', 'device.state_reported', 'command.executed', 'device.firmware_progress']);
    expect(types.filter((t) => t === 'readings.recorded')).toHaveLength(2);
    expect(results.ws!.events).toEqual(results.http!.events);
    expect(results.mqtt!.events).toEqual(results.http!.events);
  });
});
