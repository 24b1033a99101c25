/** Where a device's reported configuration differs from the desired one, by dotted path. */
export interface ConfigurationDifference {
  path: string;
  desired: unknown;
  reported: unknown;
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

export function configurationDiff(desired: Record<string, unknown>, reported: Record<string, unknown> | null, prefix = ''): ConfigurationDifference[] {
  if (reported === null) return [];
  const keys = [...new Set([...Object.keys(desired), ...Object.keys(reported)])].sort();
  return keys.flatMap((key) => {
    const path = prefix ? `${prefix}.${key}` : key;
    const want = desired[key];
    const have = reported[key];
    if (isObject(want) && isObject(have)) return configurationDiff(want, have, path);
    return canonical(want) === canonical(have) ? [] : [{ path, desired: want ?? null, reported: have ?? null }];
  });
}

/** JSON with object keys sorted, so key order (a device echoing its configuration back) is no difference. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (isObject(value)) return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  return value === undefined ? 'absent' : JSON.stringify(value);
}
