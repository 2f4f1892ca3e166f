// Package remediation answers the two remediation read models of CONTRACT
// §16, derived from events already in the audit trail (nothing new is
// stored):
//
//   - [Service.HistoryContext]: the past remediations of one target whose spec
//     hash matches, in two time tiers, for the orchestrator's routing ("has
//     this workflow been applied to this exact spec, recently, without
//     effect?"), the AI agent's prompt and the API frontend;
//   - [Service.Effectiveness]: one remediation's effectiveness score, folded
//     from the effectiveness monitor's assessment events.
//
// # The fold
//
// Both read models fold a correlation's effectiveness events in
// (event_timestamp, event_id) order with [FoldAssessments]: component
// flags, scores and details, the hash comparison, the status (SpecDrift is
// sticky), and, for history entries, the first alert resolution, the last
// health checks and the last metric deltas. [Fold.Score] weighs the assessed
// components (health 0.40, alert 0.35, metrics 0.25) over those that have a
// score, so a component not yet assessed neither helps nor hurts.
//
// # Compatibility rules
//
// Some rules look odd and are kept on purpose because the platform's clients
// depend on them (docs/remediation.md): chains are oldest first and callers
// count back from the end; an unknown post-remediation hash counts as a
// postRemediation match; the first alert event decides signalResolved; a
// status outside the client's enum is answered as Partial.
//
// # Storage
//
// The package owns its [Store] interface; internal/store implements it with
// a partial index on the target of remediation.workflow_created events
// (migration 00008) and the correlation index for assessments.
package remediation
