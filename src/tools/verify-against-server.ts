/**
 * The second half of an audit: an export that verifies offline is compared with what the running
 * server holds now. Any user can do it for the events they can read (each exported event's hash
 * against the server's event at that position); an admin also checks the server's whole chain
 * and, for an export up to the head, its head hash.
 */
export interface ExportedHash {
  position: number;
  hash: string;
}

export interface ServerComparison {
  ok: boolean;
  lines: string[];
}

const PAGE = 500;

interface EventsPage {
  data: Array<{ position: number; hash: string }>;
  meta: { next_position: number };
}

async function getJson<T>(url: string, token: string): Promise<{ status: number; body: T & { error?: { code: string; message: string } } }> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = (await response.json().catch(() => ({}))) as T & { error?: { code: string; message: string } };
  return { status: response.status, body };
}

export async function compareWithServer(server: string, token: string, exported: readonly ExportedHash[], exportHead: { position: number; hash: string } | null): Promise<ServerComparison> {
  const base = server.replace(/\/+$/, '');
  const lines: string[] = [];
  const wanted = new Map(exported.map((e) => [e.position, e.hash]));
  const last = exported.reduce((max, e) => Math.max(max, e.position), 0);
  let matched = 0;
  for (let after = Math.max(0, (exported[0]?.position ?? 1) - 1); wanted.size > 0 && after < last; ) {
    const page = await getJson<EventsPage>(`${base}/api/events?after_position=${after}&limit=${PAGE}`, token);
    if (page.status !== 200) return { ok: false, lines: [...lines, `the server answered ${page.status} ${page.body.error?.code ?? ''}: ${page.body.error?.message ?? ''}`.trim()] };
    for (const event of page.body.data) {
      const hash = wanted.get(event.position);
      if (hash === undefined) continue;
      if (hash !== event.hash) return { ok: false, lines: [...lines, `DIFFERENT: the server's event at position ${event.position} has hash ${event.hash}, the export ${hash}`] };
      wanted.delete(event.position);
      matched += 1;
    }
    if (page.body.data.length < PAGE) break;
    after = page.body.meta.next_position;
  }
  if (wanted.size > 0) return { ok: false, lines: [...lines, `MISSING: the server shows none of ${wanted.size} exported positions (first ${[...wanted.keys()][0]}) to this user`] };
  lines.push(`the server holds the same ${matched} events (hashes equal at every exported position)`);
  return checkChainAsAdmin(base, token, exportHead, lines, matched);
}

/** Only an admin may walk the server's chain: anyone else is told what they could check. */
async function checkChainAsAdmin(base: string, token: string, exportHead: { position: number; hash: string } | null, lines: string[], matched: number): Promise<ServerComparison> {
  const verify = await getJson<{ data: { ok: boolean; checked: number; head_hash?: string; first_bad_position?: number } }>(`${base}/api/events/verify`, token);
  if (verify.status === 403) return { ok: true, lines: [...lines, "the whole chain can be walked only by an admin (GET /api/events/verify); as this user, the events above are what you can vouch for"] };
  if (verify.status !== 200) return { ok: false, lines: [...lines, `GET /api/events/verify answered ${verify.status}`] };
  const chain = verify.body.data;
  if (!chain.ok) return { ok: false, lines: [...lines, `the server's own chain is broken at position ${chain.first_bad_position}`] };
  lines.push(`the server's chain verifies: ${chain.checked} events, head ${chain.head_hash}`);
  if (exportHead && exportHead.position === chain.checked && matched > 0) {
    if (exportHead.hash !== chain.head_hash) return { ok: false, lines: [...lines, `DIFFERENT: the export's head ${exportHead.hash} is not the server's ${chain.head_hash}`] };
    lines.push('the export ends at the server\'s head, with the same hash');
  } else if (exportHead) lines.push(`the server's log goes on past the export (to position ${chain.checked})`);
  return { ok: true, lines };
}
