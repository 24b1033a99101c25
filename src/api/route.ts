import type { Request, RequestHandler, Response, Router } from 'express';
import { z } from 'zod';
import type { Principal, RequestContext } from '../commands/services.js';
import type { IfMatch } from '../commands/handle.js';
import { DomainError } from '../domain/errors.js';
import type { ApiKeyScope } from '../domain/events.js';
import type { CredentialRefusal } from '../commands/credentials.js';
import { certificateRefusal, unauthenticated } from './auth.js';
import { issueDetails, strictObject, suggestsField } from '../domain/strict.js';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
export type Access = 'public' | 'user' | 'device' | 'any';

/** One route's contract: validation and the OpenAPI document are both generated from it. */
export interface RouteSpec<B extends z.ZodType, Q extends z.ZodType> {
  method: Method;
  path: string;
  /** The operation's name in the document and in generated clients: camelCase, never changed once published. */
  operationId: string;
  summary: string;
  tag: string;
  access: Access;
  body?: B;
  query?: Q;
  /** The schema of `data` in a success answer. */
  response?: z.ZodType;
  status?: number;
  list?: boolean;
  /** Fields of `meta` a success answer carries beside the paging ones (an object schema). */
  meta?: z.ZodObject;
  /** A POST that stores nothing (a dry run): answered while the read models are stalled, as GETs are. */
  storesNothing?: boolean;
  /** The answer carries a credential (a token or key shown once): no cache may keep it. */
  secret?: boolean;
  /** Submits device data: an API key of scope `devices:ingest` may call it (and nothing else). */
  ingest?: boolean;
  /** Reads If-Match (412 when it names another version). */
  ifMatch?: boolean;
  /** Sets ETag to the resource's version. */
  etag?: boolean;
  /** Reads Idempotency-Key: a repeat answers as the first did. */
  idempotencyKey?: boolean;
  /** Success statuses besides `status`, answered with the same schema (provisioning: 201 the first time, then 200). */
  alsoStatus?: number;
  /** Error statuses beyond those its access, path and body imply (a login's 401). */
  errors?: readonly number[];
  /** A request body the document shows, as the README's walk-through sends it. */
  example?: unknown;
  /** Answers the response schema itself, not inside {data} (the OpenAPI document). */
  bare?: boolean;
  /** Streams a file in these media types instead of the JSON envelope. */
  streams?: readonly string[];
}

export interface Reply {
  status?: number;
  data: unknown;
  meta?: Record<string, unknown>;
  etag?: number;
}

export interface RouteInput<B, Q> {
  body: B;
  query: Q;
  params: Record<string, string>;
  context: RequestContext;
  req: Request;
  res: Response;
}

export interface RouteDefinition {
  spec: RouteSpec<z.ZodType, z.ZodType>;
  handler: RequestHandler;
}

/** What a route without a body or query schema takes: nothing, so a field sent there is refused rather than ignored. */
const noFields = strictObject({});

const anonymous: Principal = { kind: 'user', userId: '', role: 'user', sessionId: null };

/** Declares a route: parses body and query with its schemas, checks access, wraps the answer. */
export function defineRoute<B extends z.ZodType = z.ZodUndefined, Q extends z.ZodType = z.ZodObject>(
  spec: RouteSpec<B, Q>,
  run: (input: RouteInput<z.infer<B>, z.infer<Q>>) => Promise<Reply | void> | Reply | void,
): RouteDefinition {
  const handler: RequestHandler = async (req, res) => {
    const principal = req.principal;
    if (spec.secret) res.setHeader('Cache-Control', 'no-store');
    checkAccess(spec.access, principal, req.credentialRefused, req.refusedCertificate);
    if (principal?.kind === 'user' && principal.apiKey) checkScope(principal.apiKey.scope, spec);
    // No body at all reads as {} (every field optional); a JSON null is a body, and the wrong shape.
    const body = parse(spec.body ?? noFields, req.body === undefined ? {} : req.body, '');
    const query = parseQuery(spec.query ?? noFields, req.query);
    const context: RequestContext = { principal: principal ?? anonymous, requestId: req.requestId };
    const reply = await run({ body: body as z.infer<B>, query: query as z.infer<Q>, params: req.params as Record<string, string>, context, req, res });
    if (!reply || res.headersSent) return;
    if (reply.etag !== undefined) res.setHeader('ETag', `"${reply.etag}"`);
    res.status(reply.status ?? spec.status ?? 200).json(reply.meta ? { data: reply.data, meta: reply.meta } : { data: reply.data });
  };
  return { spec: spec as unknown as RouteSpec<z.ZodType, z.ZodType>, handler };
}

/** Mounts each route; those that store go through `guardStores` first. */
export function mount(router: Router, routes: readonly RouteDefinition[], guardStores: RequestHandler): void {
  for (const { spec, handler } of routes) {
    if (spec.method === 'get' || spec.storesNothing) router[spec.method](spec.path, handler);
    else router[spec.method](spec.path, guardStores, handler);
  }
}

function checkAccess(access: Access, principal: Principal | undefined, refused: CredentialRefusal | undefined, refusedCertificate: string | undefined): void {
  if (access === 'public') return;
  if (!principal) throw refusedCertificate ? new DomainError('unauthenticated', certificateRefusal(refusedCertificate)) : unauthenticated(refused);
  if (access === 'user' && principal.kind !== 'user') throw new DomainError('forbidden', 'this route needs a user credential, not a device token');
  if (access === 'device' && principal.kind !== 'device') throw new DomainError('forbidden', 'this route needs a device token');
}

/** What an API key's scope lets it call: read only GETs; ingest only device data submission. */
function checkScope(scope: ApiKeyScope, spec: RouteSpec<z.ZodType, z.ZodType>): void {
  if (scope === 'read' && spec.method !== 'get') throw new DomainError('forbidden', 'this API key may only read (scope read)');
  if (scope === 'devices:ingest' && !spec.ingest) throw new DomainError('forbidden', 'this API key may only submit device data (scope devices:ingest)');
}

const validationFailed = (details: Array<{ path: string; message: string }>) =>
  new DomainError('validation_failed', `invalid request: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`, details);

/** Validates with zod; every problem becomes a detail naming its path. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, prefix: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw validationFailed(flattenIssues(result.error.issues, prefix ? [prefix] : []));
}

/**
 * A query parameter the route knows, given more than once, arrives as a list, which no query
 * schema takes: say so, not "expected number, received NaN". Unknown ones are refused, as body
 * fields are: a misspelt filter would otherwise widen the answer without a word. The one name
 * known without meaning is `_`, the cache buster some HTTP clients append.
 */
function parseQuery<S extends z.ZodType>(schema: S, query: Request['query']): z.infer<S> {
  // `type[]=x` is how some clients send lists; read as an unknown name it would drop the filter silently.
  const bracketed = Object.keys(query).filter((name) => name.includes('['));
  if (bracketed.length > 0) throw validationFailed(bracketed.map((name) => ({ path: name, message: 'brackets are not understood: send name=value (a list is comma-separated)' })));
  const { _: _cacheBuster, ...named } = query;
  const result = schema.safeParse(named);
  if (result.success) return result.data;
  const details = flattenIssues(result.error.issues, []).map((detail) => {
    const name = detail.path.split('.')[0]!;
    return Array.isArray(query[name]) ? { path: name, message: 'given more than once: send it once (a list is comma-separated)' } : detail;
  });
  throw validationFailed(details.filter((detail, index) => details.findIndex((d) => d.path === detail.path && d.message === detail.message) === index));
}

/** An ETag as this server writes it ("3"), also accepted bare (3); a weak one (W/"3") is read but never matches. */
const VERSION_TAG = /^(W\/)?(?:"(\d{1,15})"|(\d{1,15}))$/;

/**
 * Parses an If-Match header: an ETag or a list of them ("2", "3"), any of which may match
 * (RFC 9110, which compares them strongly: a weak tag matches nothing); absent or * means no
 * precondition. Anything else (an empty item, a tag that names no version) is refused, never
 * read as some version.
 */
export function ifMatchVersion(req: Request): IfMatch | undefined {
  const header = req.header('if-match');
  if (header === undefined || header.trim() === '*') return undefined;
  const tags = header.split(',').map((tag) => VERSION_TAG.exec(tag.trim()));
  if (!tags.every((tag) => tag !== null)) throw new DomainError('precondition_failed', 'If-Match does not name a version of this resource');
  const strong = tags.filter((tag) => tag[1] === undefined).map((tag) => Number(tag[2] ?? tag[3]));
  if (strong.length === 0) throw new DomainError('precondition_failed', 'a weak ETag (W/) never matches in If-Match');
  return strong;
}

type Issue = z.core.$ZodIssue;

/**
 * Zod reports a failed union as one issue holding every branch's issues; keep the branch
 * that got furthest into the input (its deepest issue path), so paths point at the bad field.
 */
function flattenIssues(issues: readonly Issue[], base: readonly PropertyKey[]): Array<{ path: string; message: string }> {
  return issues.flatMap((issue) => {
    const path = [...base, ...issue.path];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const reach = (branch: readonly Issue[]) => Math.max(...branch.map(deepestPath));
      const branch = [...issue.errors].sort((a, b) => reach(b) - reach(a) || unexplainedFields(a) - unexplainedFields(b) || a.length - b.length)[0]!;
      if (reach(branch) > 0) return flattenIssues(branch, path);
    }
    return issueDetails(issue, path).map((detail) => ({ path: detail.path.map(String).join('.') || '(root)', message: detail.message }));
  });
}

/** Unknown fields for which a branch knows no close name: among equals, the branch that reads a typo as its own field is the one meant. */
const unexplainedFields = (branch: readonly Issue[]): number =>
  branch.reduce((sum, issue) => sum + (issue.code === 'unrecognized_keys' ? issueDetails(issue, []).filter((detail) => !suggestsField(detail.message)).length : 0), 0);

/** How deep an issue reaches: an unknown field counts as a step into the object, as the branch that has it got that far. */
function deepestPath(issue: Issue): number {
  const nested = issue.code === 'invalid_union' ? Math.max(0, ...issue.errors.flat().map(deepestPath)) : issue.code === 'unrecognized_keys' ? 1 : 0;
  return issue.path.length + nested;
}
