/**
 * Plausible readings for a simulated device: each sensor a slow mean-reverting random walk
 * (Ornstein–Uhlenbeck) read through a little measurement noise, so values wander as real ones
 * do, never drift off, and do not look anomalous to the server's z-scores when nothing happens. Now and then a
 * device overheats (its temperature heads for 28 °C) until a cooling command arrives or the
 * spell passes, which gives thresholds and rules something to act on. Pure: randomness comes in.
 */
export type Random = () => number;

interface SensorSpec {
  sensor_type: string;
  unit: string;
  mean: number;
  /** How far one second's step moves the true value (standard deviation). */
  spread: number;
  /** The sensor's own noise on each reading (standard deviation). */
  noise: number;
  /** Per second: how strongly it is pulled back toward its mean. */
  pull: number;
  min: number;
  max: number;
}

const SENSORS: readonly SensorSpec[] = [
  { sensor_type: 'temperature', unit: '°C', mean: 21, spread: 0.03, noise: 0.15, pull: 0.1, min: -20, max: 60 },
  { sensor_type: 'humidity', unit: '%', mean: 45, spread: 0.05, noise: 0.4, pull: 0.02, min: 0, max: 100 },
  { sensor_type: 'pressure', unit: 'hPa', mean: 1013, spread: 0.02, noise: 0.2, pull: 0.01, min: 950, max: 1050 },
  { sensor_type: 'battery', unit: '%', mean: 100, spread: 0, noise: 0, pull: 0, min: 0, max: 100 },
];

const OVERHEAT_TARGET = 28;
const OVERHEAT_SECONDS = 90;
/** Per second: the chance that a device starts to overheat (about once an hour). */
const OVERHEAT_CHANCE = 1 / 3600;
const BATTERY_DRAIN_PER_SECOND = 0.002;

export interface SensorState {
  values: Record<string, number>;
  /** Seconds of overheating left; 0 when the device is normal. */
  overheat: number;
  /** The temperature a set_target command asked for. */
  target: number;
}

export interface SimReading {
  sensor_type: string;
  value: number;
  unit: string;
}

export function initialState(random: Random, overheatSoon = false): SensorState {
  const values = Object.fromEntries(SENSORS.map((s) => [s.sensor_type, s.mean + (random() - 0.5) * s.noise * 4]));
  values.battery = 60 + random() * 40;
  return { values, overheat: overheatSoon ? OVERHEAT_SECONDS : 0, target: SENSORS[0]!.mean };
}

/** Moves every sensor on by `seconds` and answers the readings of the moment, rounded as a device would send them. */
export function step(state: SensorState, random: Random, seconds: number): SimReading[] {
  if (state.overheat > 0) state.overheat = Math.max(0, state.overheat - seconds);
  else if (random() < OVERHEAT_CHANCE * seconds) state.overheat = OVERHEAT_SECONDS;
  for (const spec of SENSORS) {
    const mean = spec.sensor_type === 'temperature' ? (state.overheat > 0 ? OVERHEAT_TARGET : state.target) : spec.mean;
    const now = state.values[spec.sensor_type] ?? spec.mean;
    const moved = spec.sensor_type === 'battery' ? drain(now, seconds) : now + spec.pull * (mean - now) * seconds + spec.spread * Math.sqrt(seconds) * gaussian(random);
    state.values[spec.sensor_type] = Math.min(spec.max, Math.max(spec.min, moved));
  }
  return SENSORS.map((spec) => {
    const read = state.values[spec.sensor_type]! + spec.noise * gaussian(random);
    return { sensor_type: spec.sensor_type, value: Math.round(Math.min(spec.max, Math.max(spec.min, read)) * 100) / 100, unit: spec.unit };
  });
}

/** A battery drains, and is swapped for a full one when low. */
const drain = (level: number, seconds: number): number => (level < 15 ? 100 : level - BATTERY_DRAIN_PER_SECOND * seconds);

/** What the device does with a command, and the response it sends back. */
export function obey(state: SensorState, commandType: string, parameters: Record<string, unknown>): Record<string, unknown> {
  if (/^(fan_on|cool|cool_down|burner_off|turn_off)$/.test(commandType)) state.overheat = 0;
  const celsius = parameters.celsius;
  if (commandType === 'set_target' && typeof celsius === 'number' && Number.isFinite(celsius)) state.target = Math.min(35, Math.max(5, celsius));
  return { done: commandType, temperature: Math.round((state.values.temperature ?? 0) * 100) / 100 };
}

/** A standard normal draw (Box–Muller). */
function gaussian(random: Random): number {
  const u = Math.max(random(), Number.EPSILON);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
