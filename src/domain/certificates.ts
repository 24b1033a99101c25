import { z } from 'zod';

/**
 * A certificate's SHA-256 fingerprint as stored and compared: 64 lowercase hex digits. Tools print
 * it as `AB:CD:...` (openssl, Node) or bare hex; both are read.
 */
export const normalizeFingerprint = (text: string): string => text.replaceAll(':', '').toLowerCase();

export const fingerprintSchema = z
  .string()
  .trim()
  .regex(/^(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){31})$/, 'a SHA-256 fingerprint: 64 hex digits, with or without colons (openssl x509 -noout -fingerprint -sha256)')
  .transform(normalizeFingerprint);
