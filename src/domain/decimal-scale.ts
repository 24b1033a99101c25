/**
 * Sensor values mostly carry a few decimals: scaled by a power of ten they are integers, whose
 * steps from one reading to the next are small and store in a byte or two (varints) or a couple
 * of characters (JSON), where the values themselves took eight bytes or six characters.
 */

export const MAX_DECIMALS = 6;
/** Scaled values stay below this, so that their steps are exact doubles too. */
const MAX_SCALED = 2 ** 50;

/** Whether `value` scaled by `factor` is an integer that divides back to exactly `value`. */
export function fitsScaled(value: number, factor: number): boolean {
  const scaled = Math.round(value * factor);
  return Math.abs(scaled) < MAX_SCALED && scaled / factor === value;
}

/** The fewest decimals (0..MAX_DECIMALS) that turn every value into such an integer, or null. */
export function decimalsOf(values: readonly number[]): number | null {
  let decimals = 0;
  let factor = 1;
  // Values only ever need more decimals, never fewer: one pass, moving on where one does not fit.
  for (const value of values) {
    while (!fitsScaled(value, factor)) {
      if (decimals === MAX_DECIMALS) return null;
      decimals += 1;
      factor = 10 ** decimals;
    }
  }
  return decimals;
}
