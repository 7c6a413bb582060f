/**
 * @headroom/gateway — the providers' own HTTP APIs in front of Headroom's lanes. Any service,
 * in any language, points its official Anthropic or OpenAI SDK here by changing only `baseURL`
 * and its key (a gateway client key, never a provider key): each call becomes a Headroom job,
 * with its lane, caps, tenant quota and the fleet's shared bucket; streamed calls are relayed
 * event by event. Headroom's options ride in `headroom-*` headers (docs/gateway.md).
 *
 * ```ts
 * import { loadConfig } from '@headroom/queue';
 * import { startGateway } from '@headroom/gateway';
 * const gateway = await startGateway({ config: loadConfig('headroom.config.yaml'), redisUrl: process.env.REDIS_URL! });
 * // new Anthropic({ baseURL: gateway.url, apiKey: process.env.GATEWAY_KEY })
 * // new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: process.env.GATEWAY_KEY })
 * process.once('SIGTERM', () => gateway.close());
 * ```
 */
export { startGateway } from './internal/gateway-server.js';
export type { GatewayOptions, RunningGateway } from './internal/gateway-server.js';
