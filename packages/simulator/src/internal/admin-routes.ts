// /_sim/*: the controls over HTTP, for processes that do not hold the simulator object (the demo,
// a fleet test driving workers in other processes).

import type { Controls } from './controls.js';
import type { BatchFaultSpec, FaultSpec } from './faults.js';
import { type Exchange, json, parseJsonBody, type Reply } from './http-exchange.js';
import type { ModelLimits } from './options.js';
import type { PaceChange } from './state.js';

function bad(message: string): Reply {
  return json(400, { error: { type: 'invalid_request', message } });
}

function ok(body: unknown = { ok: true }): Reply {
  return json(200, body);
}

function withBody(exchange: Exchange, use: (body: Record<string, unknown>) => Reply): Reply {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return bad(body.message);
  if (body.value === null || typeof body.value !== 'object') return bad('expected a JSON object or array');
  try {
    return use(body.value as Record<string, unknown>);
  } catch (error) {
    return bad((error as Error).message);
  }
}

export function handleAdmin(controls: Controls, exchange: Exchange): Reply {
  const route = `${exchange.method} ${exchange.path.replace(/\/+$/, '')}`;
  switch (route) {
    case 'GET /_sim/stats':
      return ok(controls.stats());
    case 'GET /_sim/limits':
      return ok(controls.limits());
    case 'POST /_sim/limits':
      return withBody(exchange, (body) => {
        if (typeof body.scale === 'number') controls.scaleLimits(body.scale);
        else if (typeof body.model === 'string' && body.limits && typeof body.limits === 'object') {
          controls.setLimits(body.model, body.limits as Partial<ModelLimits>);
        } else return bad('expected { model, limits } or { scale }');
        return ok(controls.limits());
      });
    case 'GET /_sim/pace':
      return ok(controls.pace());
    case 'POST /_sim/pace':
      return withBody(exchange, (body) => {
        controls.setPace(body as PaceChange);
        return ok(controls.pace());
      });
    case 'GET /_sim/faults':
      return ok(controls.faults());
    case 'POST /_sim/faults':
      return withBody(exchange, (body) => {
        controls.injectFaults(body as FaultSpec | FaultSpec[]);
        return ok(controls.faults());
      });
    case 'POST /_sim/batch-faults':
      return withBody(exchange, (body) => {
        controls.injectBatchFaults(body as BatchFaultSpec);
        return ok(controls.faults());
      });
    case 'DELETE /_sim/faults':
      controls.clearFaults();
      return ok(controls.faults());
    case 'POST /_sim/reset':
      controls.reset();
      return ok();
    default:
      return json(404, { error: { type: 'not_found', message: `no admin route ${route}` } });
  }
}
