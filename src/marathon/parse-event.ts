/**
 * One Marathon event-stream message → a typed event. Pure, no I/O; never throws.
 *
 * Marathon's `/v2/events` is Server-Sent Events (docs/docs/event-bus.md; the framing example is
 * docs/docs/rest-api/public/api/v2/examples/events.txt): `event: <eventType>` then
 * `data: <json>`. Before 0.11 only `data:` lines were sent, so the type may come from the body's
 * `eventType` alone. When both are present they must agree.
 *
 * Kept: status_update_event (task running / terminal), instance_changed_event, api_post_event,
 * deployment_success, app_terminated_event, event_stream_attached. Everything else (health
 * checks, deployment steps, pods, subscriptions...) is `ignored` without parsing its body.
 * The data is parsed bounded in size and depth (src/json/bounded-json.ts): a hostile body is
 * `malformed`, never a crash.
 */
import { parseBoundedJson, type JsonLimits } from '../json/bounded-json.js';
import { isHostPort, isNonEmptyString, isRecord, preview, type JsonRecord } from './json-guards.js';
import { classifyTaskState, type TaskLiveness } from './parse-tasks.js';

export type MarathonEvent =
  | {
      readonly kind: 'status_update';
      readonly appId: string;
      readonly taskId: string;
      readonly host: string;
      readonly ports: readonly number[];
      readonly taskStatus: string;
      readonly liveness: TaskLiveness;
    }
  | { readonly kind: 'instance_changed'; readonly instanceId: string; readonly appId: string; readonly condition: string; readonly host?: string }
  /** appId absent: the post was not about one app (e.g. a group); re-list everything. */
  | { readonly kind: 'api_post'; readonly appId?: string; readonly uri?: string }
  /** appIds empty: the event does not say which apps; re-list everything. */
  | { readonly kind: 'deployment_success'; readonly id?: string; readonly appIds: readonly string[] }
  | { readonly kind: 'app_terminated'; readonly appId: string }
  | { readonly kind: 'stream_attached' };

export type ParsedEvent =
  | MarathonEvent
  | { readonly kind: 'ignored'; readonly eventType: string | undefined }
  | { readonly kind: 'malformed'; readonly error: string };

const KNOWN = new Set([
  'status_update_event',
  'instance_changed_event',
  'api_post_event',
  'deployment_success',
  'app_terminated_event',
  'event_stream_attached',
]);

/** `limits` bound the data's size and nesting (src/json/bounded-json.ts; defaults there). */
export function parseEvent(eventType: string | undefined, data: string, limits?: Partial<JsonLimits>): ParsedEvent {
  const named = eventType !== undefined && eventType !== '' && eventType !== 'message' ? eventType : undefined;
  if (named !== undefined && !KNOWN.has(named)) return { kind: 'ignored', eventType: named };
  const parsed = parseBoundedJson(data, limits);
  if (!parsed.ok) return { kind: 'malformed', error: `${named ?? 'event'}: data is not usable JSON: ${parsed.error}` };
  const body = parsed.value;
  if (!isRecord(body)) return { kind: 'malformed', error: `${named ?? 'event'}: data must be a JSON object, got ${preview(body)}` };
  const bodyType = body.eventType;
  if (bodyType !== undefined && typeof bodyType !== 'string') {
    return { kind: 'malformed', error: `${named ?? 'event'}: "eventType" must be a string, got ${preview(bodyType)}` };
  }
  if (named !== undefined && bodyType !== undefined && bodyType !== named) {
    return { kind: 'malformed', error: `event named ${preview(named)} carries eventType ${preview(bodyType)}` };
  }
  const type = named ?? bodyType;
  if (type === undefined) return { kind: 'malformed', error: `event without a type: ${preview(body)}` };
  if (!KNOWN.has(type)) return { kind: 'ignored', eventType: type };
  const r = parseBody(type, body);
  return typeof r === 'string' ? { kind: 'malformed', error: `${type}: ${r}` } : r;
}

function parseBody(type: string, b: JsonRecord): MarathonEvent | string {
  switch (type) {
    case 'event_stream_attached':
      return { kind: 'stream_attached' };
    case 'status_update_event':
      return statusUpdate(b);
    case 'instance_changed_event': {
      if (!isNonEmptyString(b.instanceId)) return `"instanceId" must be a non-empty string, got ${preview(b.instanceId)}`;
      if (!isNonEmptyString(b.runSpecId)) return `"runSpecId" must be a non-empty string, got ${preview(b.runSpecId)}`;
      if (typeof b.condition !== 'string') return `"condition" must be a string, got ${preview(b.condition)}`;
      if (b.host !== undefined && typeof b.host !== 'string') return `"host" must be a string, got ${preview(b.host)}`;
      return {
        kind: 'instance_changed',
        instanceId: b.instanceId,
        appId: b.runSpecId,
        condition: b.condition,
        ...(typeof b.host === 'string' ? { host: b.host } : {}),
      };
    }
    case 'api_post_event': {
      if (b.uri !== undefined && typeof b.uri !== 'string') return `"uri" must be a string, got ${preview(b.uri)}`;
      const def = b.appDefinition;
      if (def !== undefined && def !== null && !isRecord(def)) return `"appDefinition" must be an object, got ${preview(def)}`;
      const defId = isRecord(def) ? def.id : undefined;
      if (defId !== undefined && !isNonEmptyString(defId)) return `"appDefinition.id" must be a non-empty string, got ${preview(defId)}`;
      const appId = defId ?? appIdFromUri(b.uri);
      return { kind: 'api_post', ...(appId !== undefined ? { appId } : {}), ...(typeof b.uri === 'string' ? { uri: b.uri } : {}) };
    }
    case 'deployment_success': {
      if (b.id !== undefined && typeof b.id !== 'string') return `"id" must be a string, got ${preview(b.id)}`;
      return { kind: 'deployment_success', ...(typeof b.id === 'string' ? { id: b.id } : {}), appIds: planAppIds(b.plan) };
    }
    case 'app_terminated_event':
      if (!isNonEmptyString(b.appId)) return `"appId" must be a non-empty string, got ${preview(b.appId)}`;
      return { kind: 'app_terminated', appId: b.appId };
    default:
      return `unhandled type`;
  }
}

function statusUpdate(b: JsonRecord): MarathonEvent | string {
  if (!isNonEmptyString(b.appId)) return `"appId" must be a non-empty string, got ${preview(b.appId)}`;
  if (!isNonEmptyString(b.taskId)) return `"taskId" must be a non-empty string, got ${preview(b.taskId)}`;
  if (!isNonEmptyString(b.taskStatus)) return `"taskStatus" must be a non-empty string, got ${preview(b.taskStatus)}`;
  const liveness = classifyTaskState(b.taskStatus);
  const host = b.host ?? '';
  if (typeof host !== 'string') return `"host" must be a string, got ${preview(b.host)}`;
  const ports = b.ports ?? [];
  if (!Array.isArray(ports) || !ports.every(isHostPort)) return `"ports" must be a list of port numbers 1-65535, got ${preview(b.ports)}`;
  if (liveness === 'running' && host === '') return `a running task needs a "host"`;
  return { kind: 'status_update', appId: b.appId, taskId: b.taskId, host, ports: [...ports], taskStatus: b.taskStatus, liveness };
}

/** `/v2/apps/shop/web` → `/shop/web` (percent-decoded); anything else → undefined. */
function appIdFromUri(uri: unknown): string | undefined {
  if (typeof uri !== 'string') return undefined;
  const m = /^\/v2\/apps(\/[^?#]+)$/.exec(uri);
  if (!m || m[1] === undefined) return undefined;
  try {
    const id = decodeURIComponent(m[1]).replace(/\/+$/, '');
    return id.length > 1 ? id : undefined;
  } catch {
    return undefined;
  }
}

/** App ids named by a deployment plan's steps (`{action, app}` or `{actions: [{action, app}]}`). */
function planAppIds(plan: unknown): string[] {
  if (!isRecord(plan) || !Array.isArray(plan.steps)) return [];
  const ids = new Set<string>();
  for (const step of plan.steps) {
    if (!isRecord(step)) continue;
    const actions = Array.isArray(step.actions) ? step.actions : [step];
    for (const a of actions) if (isRecord(a) && isNonEmptyString(a.app)) ids.add(a.app);
  }
  return [...ids].sort();
}
