/** The device gateway: what the transports (HTTP routes, /ws/device, MQTT) may use of it. */
export { DeviceGateway, type CommandRelay, type ConfigurationListener, type DevicePrincipal, type DeviceSession, type Refusal } from './gateway.js';
export { answerCorrelation, correlationOf, decodeMessage, parsePayload, parseSocketMessage, type Correlation, type Decoded, type DeviceMessage, type DeviceMessageType } from './messages.js';
export { MAX_BODY_BYTES, MAX_BODY_DEPTH, checkParsedPayload, holdsReservedKey, mayHoldReservedKey, nestedDeeperThan, notUtf8Error, parseJsonPayload, reservedKeyError, tooDeepError } from './payload.js';
export { RateWindows, deviceRateKey } from './rate.js';
