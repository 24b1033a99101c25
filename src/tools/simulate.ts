/**
 * A fleet simulator: registers (or reuses) devices under an account, streams plausible
 * readings over HTTP, /ws/device or MQTT, answers their commands, and prints one line a second
 * of what was sent, acknowledged and refused.
 *
 *   npm run simulate -- --devices 50 --protocol http --rate 1
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Counters } from './simulator/counters.js';
import { SetupError, ensureDevices, ensureRule, signIn, type SimDevice } from './simulator/fleet.js';
import { initialState, obey, step, type SensorState } from './simulator/sensors.js';
import { connectDevice, protocols, type DeviceLink } from './simulator/transports.js';

const USAGE = `usage: npm run simulate -- [--devices N] [--protocol http|ws|mqtt] [--rate PER_SECOND]
       [--url http://localhost:8080] [--mqtt-url mqtt://localhost:1883]
       [--username simulator] [--password "simulator password"] [--prefix sim] [--duration SECONDS] [--no-rule]`;

const optionsSchema = z.object({
  devices: z.coerce.number().int().min(1).max(10_000).default(10),
  protocol: z.enum(protocols).default('http'),
  rate: z.coerce.number().positive().max(100).default(1),
  url: z.url().default('http://localhost:8080'),
  'mqtt-url': z.string().regex(/^(mqtts?|wss?):\/\//, 'an mqtt://, mqtts://, ws:// or wss:// URL').optional(),
  username: z.string().min(3).default('simulator'),
  password: z.string().min(8).default('simulator password'),
  prefix: z.string().regex(/^[A-Za-z0-9_.-]{1,40}$/).default('sim'),
  duration: z.coerce.number().positive().optional(),
  'no-rule': z.boolean().default(false),
});
type Options = z.infer<typeof optionsSchema>;

function readOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string' },
      protocol: { type: 'string' },
      rate: { type: 'string' },
      url: { type: 'string' },
      'mqtt-url': { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      prefix: { type: 'string' },
      duration: { type: 'string' },
      'no-rule': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const parsed = optionsSchema.safeParse(values);
  if (!parsed.success) throw new SetupError(`${parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}\n${USAGE}`);
  return { ...parsed.data, url: parsed.data.url.replace(/\/+$/, '') };
}

/** The broker of the server named by --url, on the default MQTT port, unless --mqtt-url says otherwise. */
const mqttUrlOf = (options: Options): string => options['mqtt-url'] ?? `mqtt://${new URL(options.url).hostname}:1883`;

async function main(): Promise<void> {
  const options = readOptions(process.argv.slice(2));
  const log = (line: string) => console.log(line);
  const fleet = { url: options.url, username: options.username, password: options.password, devices: options.devices, prefix: options.prefix, log };
  const token = await signIn(fleet);
  const devices = await ensureDevices(fleet, token);
  if (!options['no-rule']) await ensureRule(fleet, token, devices[0]!);

  const counters = new Counters();
  const states = new Map<string, SensorState>(devices.map((device, i) => [device.id, initialState(Math.random, i === 0)]));
  const context = {
    url: options.url,
    mqttUrl: mqttUrlOf(options),
    counters,
    runId: `sim-${randomBytes(4).toString('hex')}`,
    obey: (device: SimDevice, commandType: string, parameters: Record<string, unknown>) => obey(states.get(device.id)!, commandType, parameters),
  };
  log(`streaming ${options.rate}/s from each of ${devices.length} devices over ${options.protocol}${options.protocol === 'mqtt' ? ` (${context.mqttUrl})` : ''}; Ctrl-C stops`);
  const links = await connectAll(devices, (device) => connectDevice(options.protocol, device, context), log);

  const started = Date.now();
  let seq = 0;
  const interval = 1000 / options.rate;
  const sender = setInterval(() => {
    seq += 1;
    links.forEach((link, i) => link.send(step(states.get(devices[i]!.id)!, Math.random, interval / 1000), seq));
  }, interval);
  let before = { sent: 0 };
  const printer = setInterval(() => {
    log(counters.line((Date.now() - started) / 1000, before));
    before = { sent: counters.sent };
  }, 1000);

  await stopSignal(options.duration);
  clearInterval(sender);
  clearInterval(printer);
  await Promise.all(links.map((link) => link.close()));
  log(`done: ${counters.line((Date.now() - started) / 1000, before)}`);
}

/** Connects the devices a few at a time; a device that cannot connect is reported, the others run. */
async function connectAll(devices: SimDevice[], connect: (device: SimDevice) => Promise<DeviceLink>, log: (line: string) => void): Promise<DeviceLink[]> {
  const links: DeviceLink[] = [];
  for (let i = 0; i < devices.length; i += 20) {
    const batch = await Promise.allSettled(devices.slice(i, i + 20).map(connect));
    for (const [j, outcome] of batch.entries()) {
      if (outcome.status === 'fulfilled') links.push(outcome.value);
      else log(`${devices[i + j]!.name} could not connect: ${outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason)}`);
    }
  }
  if (links.length === 0) throw new SetupError('no device could connect');
  return links;
}

/** Resolves at SIGINT or SIGTERM, or after the duration. */
function stopSignal(durationSeconds: number | undefined): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (durationSeconds !== undefined) setTimeout(resolve, durationSeconds * 1000);
  });
}

main().catch((error: unknown) => {
  console.error(error instanceof SetupError ? error.message : error);
  process.exit(1);
});
