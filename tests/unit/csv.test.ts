import { describe, expect, it } from 'vitest';
import { csvField } from '../../src/api/csv.js';

describe('csvField', () => {
  it.each(['=1+1', '+1', '-1', '@SUM(A1)', '\t=1', '\r=1'])('neutralises a cell a spreadsheet would read as a formula: %j', (value) => {
    const cell = csvField(value);
    expect(cell.replace(/^"/, '').startsWith("'")).toBe(true);
  });

  it('quotes a cell holding a separator, quote or line break, after neutralising it', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('\rx')).toBe(`"'\rx"`);
  });

  it('leaves an ordinary cell as it is', () => {
    expect(csvField('temperature')).toBe('temperature');
    expect(csvField('')).toBe('');
  });
});
