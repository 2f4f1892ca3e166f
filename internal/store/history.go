package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/remediation"
)

// The two statements of RemediationEvents differ only in the cluster
// condition, so each keeps one plan. The target index
// (audit_events_remediation_target_idx, migration 00008) finds the target's
// remediations in the window; the post-hash check probes the correlation
// index once per candidate, which is why there is no index on the post hash.
// Hashes compare as JSON strings (to_jsonb), so a number never matches.
const remediationEventsSQL = `
SELECT r.event_id, r.event_timestamp, r.correlation_id, r.event_data
FROM audit_events r
WHERE r.event_type = 'remediation.workflow_created'
  AND (r.event_data ->> 'target_resource') = $1
  AND jsonb_typeof(r.event_data -> 'target_resource') = 'string'
  AND r.event_timestamp >= $2 AND r.event_timestamp < $3
  AND r.event_date >= $4::date AND r.event_date <= $5::date
  AND (r.event_data -> 'pre_remediation_spec_hash' = to_jsonb($6::text)
       OR EXISTS (SELECT 1 FROM audit_events a
                  WHERE a.correlation_id = r.correlation_id
                    AND a.event_category = 'effectiveness'
                    AND a.event_data -> 'post_remediation_spec_hash' = to_jsonb($6::text)))
  %s
ORDER BY r.event_timestamp DESC, r.event_id DESC
LIMIT $7`

var (
	remediationEventsAnyCluster = fmt.Sprintf(remediationEventsSQL, "AND $8::text IS NULL")
	remediationEventsOneCluster = fmt.Sprintf(remediationEventsSQL, "AND r.cluster_id = $8")
)

// RemediationEvents returns, for each query, the remediation events it
// selects, oldest first by (event_timestamp, event_id): the newest q.Limit
// of them when there are more. The queries travel in one round trip.
func (s *Store) RemediationEvents(ctx context.Context, qs ...remediation.RemediationQuery) (_ [][]remediation.RemediationEvent, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	out := make([][]remediation.RemediationEvent, len(qs))
	b := &pgx.Batch{}
	for i, q := range qs {
		if !q.From.Before(q.To) {
			continue
		}
		sql, cluster := remediationEventsAnyCluster, any(nil)
		if q.ClusterID != "" {
			sql, cluster = remediationEventsOneCluster, q.ClusterID
		}
		// To is exclusive, so its own date is the last that can hold a row.
		b.Queue(sql, q.Target, q.From, q.To, audit.DateOf(q.From).Std(), audit.DateOf(q.To).Std(),
			q.SpecHash, q.Limit, cluster).Query(func(rows pgx.Rows) error {
			events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (remediation.RemediationEvent, error) {
				var e remediation.RemediationEvent
				err := row.Scan(&e.ID, &e.Timestamp, &e.CorrelationID, &e.Data)
				e.Timestamp = e.Timestamp.UTC()
				return e, err
			})
			slices.Reverse(events)
			out[i] = events
			return err
		})
	}
	if b.Len() == 0 {
		return out, nil
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store: remediation events: %w", err)
	}
	return out, nil
}

// AssessmentEvents returns the effectiveness events of the correlations,
// grouped by correlation and, within one, in (event_timestamp, event_id)
// order. Every month is searched: an assessment counts at any time.
func (s *Store) AssessmentEvents(ctx context.Context, correlationIDs []string) (_ []remediation.AssessmentEvent, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	if len(correlationIDs) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, `
SELECT correlation_id, event_type, event_data FROM audit_events
WHERE correlation_id = ANY($1) AND event_category = 'effectiveness'
ORDER BY correlation_id, event_timestamp, event_id`, correlationIDs)
	if err != nil {
		return nil, fmt.Errorf("store: assessment events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (remediation.AssessmentEvent, error) {
		var e remediation.AssessmentEvent
		err := row.Scan(&e.CorrelationID, &e.Type, &e.Data)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: assessment events: %w", err)
	}
	return events, nil
}
