import { z } from 'zod';
import { DomainError } from '../../domain/errors.js';
import type { DeviceGateway } from '../../gateway/index.js';
import { inboundOf, subscriptionVerdict } from '../../mqtt/topics.js';
import { defineRoute } from '../route.js';

/**
 * What an existing broker (MQTT_BROKER_URL) asks the server: may this client connect, may it
 * publish or subscribe there. Two shapes: EMQX's HTTP authentication and authorization
 * (always 200, the verdict in `result`) and mosquitto-go-auth's HTTP backend (the status is
 * the verdict: 200 allowed, 403 not). Only devices are judged here: a device's client id is
 * its id, its password (or username) its token, its topics its own. Any other client (the
 * server's own connection included) is for the broker's own users: "ignore" (EMQX goes on to
 * its next authenticator) or 403.
 */
const credentials = z.looseObject({ clientid: z.string().max(256), username: z.string().max(4096).optional(), password: z.string().max(4096).optional() });
const emqxAuthz = z.looseObject({ clientid: z.string().max(256), username: z.string().max(4096).optional(), topic: z.string().max(4096), action: z.enum(['publish', 'subscribe']) });
const goAuthAcl = z.looseObject({ clientid: z.string().max(256), username: z.string().max(4096).optional(), topic: z.string().max(4096), acc: z.number().int().min(1).max(4) });
const goAuthSuperuser = z.looseObject({ username: z.string().max(4096).optional() });
const verdict = z.object({ result: z.enum(['allow', 'deny', 'ignore']), is_superuser: z.boolean().optional() });

/** mosquitto-go-auth's access: 1 read, 2 write, 3 read and write, 4 subscribe. */
const WRITE = 2;

export function mqttAuthRoutes(gateway: DeviceGateway) {
  /** A device authenticates when its token names the device its client id says. */
  const deviceAuthenticates = async ({ clientid, username, password }: z.infer<typeof credentials>) => {
    const principal = await gateway.authenticate(password || username);
    return principal !== null && principal.deviceId === clientid;
  };
  const mayUse = (clientid: string, topic: string, write: boolean) => (write ? inboundOf(clientid, topic) !== null : subscriptionVerdict(clientid, topic) === 'allow') && gateway.knows(clientid);
  /** mosquitto-go-auth reads the status alone: a denial is a 403 in the usual error envelope. */
  const allowOrDeny = (allowed: boolean, what: string) => {
    if (!allowed) throw new DomainError('forbidden', what);
    return { data: { result: 'allow' as const } };
  };
  const common = { tag: 'mqtt', access: 'public', storesNothing: true } as const;
  return [
    defineRoute({ ...common, method: 'post', path: '/api/mqtt/auth', operationId: 'mqttAuthenticate', summary: "EMQX HTTP authentication: a device's client id and token", body: credentials, response: verdict }, async ({ body }) => ({
      data: (await deviceAuthenticates(body)) ? { result: 'allow', is_superuser: false } : { result: gateway.knows(body.clientid) ? 'deny' : 'ignore' },
    })),
    defineRoute({ ...common, method: 'post', path: '/api/mqtt/authz', operationId: 'mqttAuthorize', summary: 'EMQX HTTP authorization: a device publishes and subscribes under its own devices/{id}/ only', body: emqxAuthz, response: verdict }, ({ body }) => ({
      data: { result: mayUse(body.clientid, body.topic, body.action === 'publish') ? 'allow' : 'deny' },
    })),
    defineRoute({ ...common, method: 'post', path: '/api/mqtt/user', operationId: 'mqttGoAuthUser', errors: [403], summary: 'mosquitto-go-auth HTTP backend: 200 for a device with its token, else 403', body: credentials, response: verdict }, async ({ body }) => {
      return allowOrDeny(await deviceAuthenticates(body), 'not a device with its token');
    }),
    defineRoute({ ...common, method: 'post', path: '/api/mqtt/superuser', operationId: 'mqttGoAuthSuperuser', errors: [403], summary: 'mosquitto-go-auth HTTP backend: no device is a superuser (403)', body: goAuthSuperuser, response: verdict }, () => allowOrDeny(false, 'no device is a superuser')),
    defineRoute({ ...common, method: 'post', path: '/api/mqtt/acl', operationId: 'mqttGoAuthAcl', errors: [403], summary: 'mosquitto-go-auth HTTP backend: 200 when a device may use the topic (its own devices/{id}/), else 403', body: goAuthAcl, response: verdict }, ({ body }) => {
      return allowOrDeny(mayUse(body.clientid, body.topic, (body.acc & WRITE) !== 0), 'a device may use only its own devices/{id}/ topics');
    }),
  ];
}
