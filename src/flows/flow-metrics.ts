/**
 * The flow store's Prometheus metrics (flows design section 5), as text for /metrics:
 *   portcullis_flows_total{app,port,verdict,direction}   new connections per destination app and
 *                                                         port name (or number); app "" = unclaimed
 *   portcullis_flow_records_total                        records ingested
 *   portcullis_flow_records_dropped_total                records and aggregates the bounds dropped
 *   portcullis_flow_lost_total{verdict,direction}        new connections a full kernel set could not record
 *   portcullis_flow_aggregates                           aggregates held now
 * (`portcullis_flow_records_rejected_total`, counted by the Sync stream, is written by
 * controller-status.ts.) App ids and port names are untrusted: label values are escaped per the text format (\\, \", \n).
 */
import type { FlowStore } from './flow-store.js';

/** A Prometheus label value: backslash, double quote and line feed escaped. */
export function labelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function header(out: string[], name: string, type: 'counter' | 'gauge', help: string): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

export function flowMetrics(store: FlowStore, nowMs: number): string {
  const out: string[] = [];
  header(out, 'portcullis_flows_total', 'counter', 'New connections recorded by agents, per destination app, port name (or number), verdict and direction.');
  for (const [k, n] of [...store.flowsTotal].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [direction, verdict, app, port] = k.split('\u0000') as [string, string, string, string];
    out.push(`portcullis_flows_total{app="${labelValue(app)}",port="${labelValue(port)}",verdict="${verdict}",direction="${direction}"} ${n}`);
  }
  header(out, 'portcullis_flow_records_total', 'counter', 'Flow records ingested from agents.');
  out.push(`portcullis_flow_records_total ${store.counters.records}`);
  header(out, 'portcullis_flow_records_dropped_total', 'counter', 'Flow records and aggregates dropped by --flow-max-records, or received before a policy and cluster were in force.');
  out.push(`portcullis_flow_records_dropped_total ${store.counters.dropped}`);
  header(out, 'portcullis_flow_lost_total', 'counter', 'New connections that a full kernel flow set could not record, as agents reported them.');
  for (const [k, n] of [...store.lostTotal].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [verdict, direction] = k.split('\u0000') as [string, string];
    out.push(`portcullis_flow_lost_total{verdict="${verdict}",direction="${direction}"} ${n}`);
  }
  header(out, 'portcullis_flow_aggregates', 'gauge', 'Flow aggregates held (bounded by --flow-max-records).');
  out.push(`portcullis_flow_aggregates ${store.summary(nowMs).records}`);
  return `${out.join('\n')}\n`;
}
