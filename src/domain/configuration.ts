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
    return JSON.stringify(want) === JSON.stringify(have) ? [] : [{ path, desired: want ?? null, reported: have ?? null }];
  });
}
