import cors from 'cors';
import express, { type Express } from 'express';
import type { Accounts } from '../commands/accounts.js';
import type { DeviceCommands } from '../commands/device-commands.js';
import type { Devices } from '../commands/devices.js';
import type { Rules } from '../commands/rules.js';
import type { Rollouts } from '../commands/rollouts.js';
import type { Templates } from '../commands/templates.js';
import type { Groups } from '../commands/groups.js';
import type { Services } from '../commands/services.js';
import type { OfflineDetector } from '../automation/offline-detector.js';
import { MAX_BODY_BYTES, type DeviceGateway } from '../gateway/index.js';
import { authenticate } from './auth.js';
import { docsAssets } from './docs.js';
import { errorHandler, notFoundRoute, requireJsonBody } from './errors.js';
import { inspectBody, refuseHostileBodies } from './body-guards.js';
import { originAllowed } from './origins.js';
import { rateLimit } from './rate-limit.js';
import { refuseWhileStalled } from './stall-guard.js';
import { requestContext } from './request-context.js';
import { mount, type RouteDefinition } from './route.js';
import { accountRoutes } from './routes/accounts.js';
import { alertRoutes } from './routes/alerts.js';
import { commandRoutes } from './routes/commands.js';
import { deviceRoutes } from './routes/devices.js';
import { eventRoutes } from './routes/events.js';
import { groupRoutes } from './routes/groups.js';
import { ruleRoutes } from './routes/rules.js';
import { mqttAuthRoutes } from './routes/mqtt-auth.js';
import { systemRoutes, type HealthExtras } from './routes/system.js';
import { telemetryRoutes } from './routes/telemetry.js';
import { templateRoutes } from './routes/templates.js';
import { userRoutes } from './routes/users.js';
import type { UserAdmin } from '../commands/user-admin.js';

export interface AppHandlers {
  accounts: Accounts;
  devices: Devices;
  groups: Groups;
  offline: OfflineDetector;
  commands: DeviceCommands;
  rules: Rules;
  templates: Templates;
  rollouts: Rollouts;
  users: UserAdmin;
  gateway: DeviceGateway;
  /** What /api/health adds about listeners beside HTTP. */
  health?: HealthExtras;
}

export { MAX_BODY_BYTES } from '../gateway/index.js';

/** Served over TLS, browsers are told to come back only over TLS (a year, renewed by every answer). */
const strictTransportSecurity: express.RequestHandler = (_req, res, next) => {
  res.setHeader('Strict-Transport-Security', 'max-age=31536000');
  next();
};

export function createApp(services: Services, handlers: AppHandlers): Express {
  const { config, logger, clock } = services;
  const app = express();
  app.disable('x-powered-by');
  // ETags here are stream versions, set by the routes; Express's body hashes would shadow them.
  app.set('etag', false);

  app.use(requestContext(logger, clock));
  if (config.tls) app.use(strictTransportSecurity);
  app.use(
    cors({
      origin: config.corsOrigins ?? ((origin, allow) => allow(null, originAllowed(null, origin))),
      credentials: true,
      exposedHeaders: ['ETag', 'X-Request-Id', 'Retry-After'],
    }),
  );
  app.use(requireJsonBody);
  // Not strict: a JSON string or number is JSON, and answers validation_failed like any other wrong shape.
  app.use(express.json({ limit: MAX_BODY_BYTES, strict: false, verify: inspectBody }));
  app.use(refuseHostileBodies);
  app.use(authenticate(handlers.accounts));
  if (config.rateLimitPerMinute !== null) app.use(rateLimit(handlers.gateway.rates));

  const routes: RouteDefinition[] = [];
  routes.push(
    ...systemRoutes(services, () => routes, handlers.health),
    ...accountRoutes(services, handlers.accounts),
    ...userRoutes(handlers.accounts, handlers.users),
    ...deviceRoutes(services, handlers.devices),
    ...groupRoutes(services, handlers.groups),
    ...telemetryRoutes(services, handlers.gateway, handlers.offline),
    ...alertRoutes(services),
    ...eventRoutes(services),
    ...commandRoutes(services, handlers.commands, handlers.rollouts, handlers.gateway),
    ...templateRoutes(services, handlers.templates),
    ...ruleRoutes(services, handlers.rules),
    ...mqttAuthRoutes(handlers.gateway),
  );
  const router = express.Router();
  mount(router, routes, refuseWhileStalled(services.runner));
  app.use(router);
  app.use(docsAssets());
  app.use(notFoundRoute);
  app.use(errorHandler);
  return app;
}
