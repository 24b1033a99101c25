/**
 * Quotes a CSV field when it holds a separator, quote or line break; neutralises what a
 * spreadsheet reads as a formula (= + - @, and a leading tab or carriage return, which some strip first).
 */
export function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
