import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import express, { type Router } from 'express';

/**
 * The interactive API reference: Swagger UI from its npm package (static files, no runtime
 * dependency), served by this server so the reference works offline and behind firewalls.
 * It renders /api/openapi.json, the document the routes are validated with.
 */
const ASSETS = '/api/docs/assets';
const rendererDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IoT controller API reference</title>
<link rel="stylesheet" href="${ASSETS}/swagger-ui.css">
</head>
<body>
<div id="reference"></div>
<script src="${ASSETS}/swagger-ui-bundle.js"></script>
<script src="${ASSETS}/start.js"></script>
</body>
</html>
`;

// A file, not an inline script, so a Content-Security-Policy without 'unsafe-inline' allows it.
const START = `window.reference = SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#reference', deepLinking: true, tryItOutEnabled: false });\n`;

/** The renderer's files, and the few lines that start it. */
export function docsAssets(): Router {
  const router = express.Router();
  router.get(`${ASSETS}/start.js`, (_req, res) => {
    res.type('application/javascript').send(START);
  });
  router.use(ASSETS, express.static(rendererDir, { index: false, maxAge: '1h' }));
  return router;
}
