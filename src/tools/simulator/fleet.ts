import { createHash } from 'node:crypto';

/** A simulated device as the transports need it. */
export interface SimDevice {
  id: string;
  name: string;
  token: string;
}

export interface FleetOptions {
  url: string;
  username: string;
  password: string;
  devices: number;
  prefix: string;
  log: (line: string) => void;
}

export class SetupError extends Error {}

interface Answer {
  status: number;
  body: { data?: unknown; meta?: { total: number }; error?: { code: string; message: string } };
}

export async function call(url: string, path: string, init: { method?: string; token?: string; deviceToken?: string; body?: unknown } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.deviceToken) headers['x-device-token'] = init.deviceToken;
  const response = await fetch(`${url}${path}`, { method: init.method ?? (init.body === undefined ? 'GET' : 'POST'), headers, ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }) });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Answer['body']) : {} };
}

function expectOk(answer: Answer, what: string): unknown {
  if (answer.status >= 200 && answer.status < 300 && answer.body.data !== undefined) return answer.body.data;
  const error = answer.body.error;
  throw new SetupError(`${what} failed: ${answer.status} ${error ? `${error.code}: ${error.message}` : ''}`.trim());
}

/** Logs in, or registers the account when it does not exist yet; answers a session token. */
export async function signIn({ url, username, password, log }: FleetOptions): Promise<string> {
  const login = await call(url, '/api/auth/login', { body: { username, password } });
  if (login.status === 200) return (expectOk(login, 'login') as { token: string }).token;
  if (login.status !== 401) expectOk(login, 'login');
  const registered = await call(url, '/api/auth/register', { body: { username, password, email: `${username}@example.com` } });
  if (registered.status === 409) throw new SetupError(`the user ${username} exists with another password: give --password, or another --username`);
  log(`registered the user ${username}`);
  return (expectOk(registered, 'registration') as { token: string }).token;
}

/**
 * The token of a simulated device, derived from the account and its name: a second run finds
 * the device again and speaks for it without keeping anything on disk.
 */
export const simulatedToken = (username: string, password: string, name: string): string =>
  `sim_${createHash('sha256').update(`${username}\n${password}\n${name}`).digest('hex').slice(0, 40)}`;

const SIM_CONFIGURATION = { thresholds: { temperature: { max: 25, severity: 'warning' } } };

/** The devices `prefix-001` … under the account: those that exist are reused, the others registered. */
export async function ensureDevices(options: FleetOptions, token: string): Promise<SimDevice[]> {
  const existing = await listByPrefix(options, token);
  const names = Array.from({ length: options.devices }, (_, i) => `${options.prefix}-${String(i + 1).padStart(3, '0')}`);
  const devices: SimDevice[] = [];
  let reused = 0;
  for (const name of names) {
    const deviceToken = simulatedToken(options.username, options.password, name);
    const found = existing.get(name);
    if (found && (await tokenWorks(options.url, found, deviceToken))) {
      devices.push({ id: found, name, token: deviceToken });
      reused += 1;
      continue;
    }
    // A device of that name whose token no longer works (replaced, another password) is replaced too.
    if (found) expectOk(await call(options.url, `/api/devices/${found}`, { method: 'DELETE', token }), `replacing ${name}`);
    const created = await call(options.url, '/api/devices', { token, body: { name, type: 'environment-sensor', auth_token: deviceToken, configuration: SIM_CONFIGURATION } });
    devices.push({ id: (expectOk(created, `registering ${name}`) as { id: string }).id, name, token: deviceToken });
  }
  options.log(`${devices.length} devices: ${reused} reused, ${devices.length - reused} registered`);
  return devices;
}

async function listByPrefix({ url, prefix }: FleetOptions, token: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (let offset = 0; ; offset += 500) {
    const page = await call(url, `/api/devices?q=${encodeURIComponent(`${prefix}-`)}&limit=500&offset=${offset}`, { token });
    const rows = expectOk(page, 'listing devices') as Array<{ id: string; name: string }>;
    for (const row of rows) found.set(row.name, row.id);
    if (rows.length < 500) return found;
  }
}

/** A heartbeat with the derived token: it is also the device saying it is back. */
async function tokenWorks(url: string, deviceId: string, deviceToken: string): Promise<boolean> {
  const beat = await call(url, `/api/devices/${deviceId}/heartbeat`, { deviceToken, body: {} });
  return beat.status === 200;
}

/**
 * One rule, made once: when the first device is above 25 °C for 5 seconds, turn its fan on and
 * raise an alert. The simulated device cools down when it gets the command.
 */
export async function ensureRule(options: FleetOptions, token: string, first: SimDevice): Promise<void> {
  const name = `${options.prefix} overheat`;
  const rules = expectOk(await call(options.url, '/api/automation/rules?limit=500', { token }), 'listing rules') as Array<{ name: string }>;
  if (rules.some((rule) => rule.name === name)) return;
  const rule = {
    name,
    description: 'made by npm run simulate',
    trigger_conditions: { all: [{ type: 'reading', device_id: first.id, sensor_type: 'temperature', operator: '>', value: 25, for_seconds: 5 }] },
    actions: [
      { type: 'command', device_id: first.id, command_type: 'fan_on' },
      { type: 'alert', severity: 'warning', message: `${first.name} is overheating: fan on` },
    ],
    cooldown_seconds: 60,
  };
  expectOk(await call(options.url, '/api/automation/rules', { token, body: rule }), 'creating the rule');
  options.log(`created the rule "${name}" on ${first.name}`);
}
