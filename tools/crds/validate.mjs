// Validate rendered monitoring.coreos.com/v1 objects against the Prometheus operator's CRD schemas
// (the JSON schemas @kubernetes-models/prometheus-operator generates from the operator's CRDs).
// Usage: node validate.mjs FILE.json...   One line per object; exit 1 if any is invalid.
import fs from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const kinds = { ServiceMonitor, PrometheusRule };
let failed = 0;
for (const path of process.argv.slice(2)) {
  const doc = JSON.parse(fs.readFileSync(path, "utf8"));
  const Kind = kinds[doc.kind];
  if (doc.apiVersion !== "monitoring.coreos.com/v1" || Kind === undefined) {
    failed++;
    console.log(`invalid ${path}: not a monitoring.coreos.com/v1 ServiceMonitor or PrometheusRule`);
    continue;
  }
  try {
    new Kind(doc).validate();
    console.log(`ok ${doc.kind} ${doc.metadata.name} ${path}`);
  } catch (error) {
    failed++;
    console.log(`invalid ${doc.kind} ${doc.metadata.name} ${path}: ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
