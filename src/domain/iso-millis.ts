/**
 * ISO times of the form 'YYYY-MM-DDTHH:mm:ss.sssZ' to milliseconds and back, fast for the many
 * times of one day a submission carries: the day is parsed (and checked to exist) once, the
 * time of day read off its digits. Exact: what `msOfIso` accepts, `isoOfMs` gives back unchanged.
 */

const DAY_MS = 86_400_000;
const DAY_PREFIX = 'YYYY-MM-DDT'.length;

let parsedDay = { prefix: '', ms: 0 };
let formattedDay = { ms: NaN, prefix: '' };

const digit = (text: string, at: number): number => {
  const d = text.charCodeAt(at) - 48;
  return d >= 0 && d <= 9 ? d : NaN;
};
const number = (text: string, at: number, count: number): number => {
  let n = 0;
  for (let i = at; i < at + count; i++) n = n * 10 + digit(text, i);
  return n;
};

/** The milliseconds of a normalised UTC ISO time, or null when it is not one (another form, a day that does not exist). */
export function msOfIso(text: string): number | null {
  if (text.length !== 24 || text[13] !== ':' || text[16] !== ':' || text[19] !== '.' || text[23] !== 'Z') return null;
  if (!text.startsWith(parsedDay.prefix) || parsedDay.prefix === '') {
    const prefix = text.slice(0, DAY_PREFIX);
    const ms = Date.parse(`${prefix}00:00:00.000Z`);
    if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, DAY_PREFIX) !== prefix) return null;
    parsedDay = { prefix, ms };
  }
  const hours = number(text, 11, 2);
  const minutes = number(text, 14, 2);
  const seconds = number(text, 17, 2);
  const millis = number(text, 20, 3);
  if (!(hours < 24 && minutes < 60 && seconds < 60 && millis >= 0)) return null;
  return parsedDay.ms + hours * 3_600_000 + minutes * 60_000 + seconds * 1000 + millis;
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** The normalised UTC ISO time of milliseconds, as Date.prototype.toISOString writes it. */
export function isoOfMs(ms: number): string {
  const dayMs = Math.floor(ms / DAY_MS) * DAY_MS;
  if (dayMs !== formattedDay.ms) {
    const day = new Date(dayMs).toISOString();
    // Years outside 0000-9999 are written with a sign and six digits: left to Date.
    if (day.length !== 24) return new Date(ms).toISOString();
    formattedDay = { ms: dayMs, prefix: day.slice(0, DAY_PREFIX) };
  }
  const of = ms - dayMs;
  return `${formattedDay.prefix}${pad(Math.floor(of / 3_600_000), 2)}:${pad(Math.floor(of / 60_000) % 60, 2)}:${pad(Math.floor(of / 1000) % 60, 2)}.${pad(of % 1000, 3)}Z`;
}
