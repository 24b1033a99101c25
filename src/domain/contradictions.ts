/** Words whose meanings cancel each other in a command type. */
const OPPOSITES: ReadonlyArray<readonly [string, string]> = [
  ['on', 'off'],
  ['open', 'close'],
  ['start', 'stop'],
  ['enable', 'disable'],
  ['activate', 'deactivate'],
  ['lock', 'unlock'],
  ['arm', 'disarm'],
  ['up', 'down'],
  ['increase', 'decrease'],
  ['raise', 'lower'],
  ['connect', 'disconnect'],
  ['engage', 'disengage'],
  ['extend', 'retract'],
  ['pause', 'resume'],
  ['mute', 'unmute'],
  ['heat', 'cool'],
  ['fill', 'drain'],
  ['charge', 'discharge'],
];

const opposite = new Map(OPPOSITES.flatMap(([a, b]) => [[a, b] as const, [b, a] as const]));

/** turn_on, turnOn, "turn-on" -> [turn, on]. */
const wordsOf = (commandType: string): string[] =>
  commandType
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);

/** The same words but for one pair of opposites: turn_on / turn_off, open_valve / close_valve, start / stop. */
export function opposedCommandTypes(a: string, b: string): boolean {
  const x = wordsOf(a);
  const y = wordsOf(b);
  if (x.length !== y.length) return false;
  const differing = x.flatMap((word, i) => (word === y[i] ? [] : [[word, y[i]!] as const]));
  return differing.length === 1 && opposite.get(differing[0]![0]) === differing[0]![1];
}

/** Two commands to one device contradict: opposite types, or one type with other parameters. */
export function commandsContradict(x: { command_type: string; parameters?: unknown }, y: { command_type: string; parameters?: unknown }): boolean {
  if (opposedCommandTypes(x.command_type, y.command_type)) return true;
  return x.command_type === y.command_type && JSON.stringify(x.parameters ?? {}) !== JSON.stringify(y.parameters ?? {});
}
