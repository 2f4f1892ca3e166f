package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
)

// TestArchiveRowsMatchTheEventPath checks that the archive's rows, decoded
// straight from PostgreSQL's binary COPY tuples, are the rows the job made
// before from the events the store reads (scanEvent, then archive.RowOf):
// for a month of awkward events (unicode, NULLs and empty strings, empty
// and large JSON, maximal lengths, defaults stored as NULL and explicit
// values, parents, durations, holds, microsecond timestamps), the same Row
// values and the same Parquet file, byte for byte. A month archived before
// and the same month archived now are the same files.
func TestArchiveRowsMatchTheEventPath(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err := st.EnsurePartitions(ctx, month, 2)
	require.NoError(t, err)

	long := func(unit string, n int) string { return strings.Repeat(unit, n) }
	corrs := []string{
		"rr-plain-" + uuid.NewString(),
		"ré-ünïcødé-日本-😀-" + uuid.NewString(),
		"RR-" + long("x", 252), // 255 bytes, the longest correlation id
		"rr-" + long("é", 126), // 255 bytes of 2-byte runes
		"rr-held-" + uuid.NewString(),
	}
	datas := []string{
		`{}`,
		`{"a":null,"":"","nested":{"arr":[1,2.50,-0,1E+2,true,false,null,[]]}}`,
		`{"s":"日本語 \u00e9 😀 \"quoted\" \\ back\nslash\ttab","n":1.50}`,
		`{"big":"` + long("ab", 250<<10/2) + `"}`, // toasted and compressed; with the longest error_message, larger than a run reader's buffer
		`[]`,
		`"just a string"`,
	}
	maxDur := int32(math.MaxInt32)
	zero := int32(0)
	var all []*audit.Event
	for c, corr := range corrs {
		var prev *audit.Event
		for s := range 6 {
			i := c*6 + s
			ts := month.Add(time.Duration(s*len(corrs)+c)*time.Hour + time.Duration(i*137)*time.Microsecond)
			ev := newEvent(corr, ts, int32(1+i*97%2555))
			ev.Data = json.RawMessage(datas[i%len(datas)])
			switch i % 4 {
			case 0: // every default: stored as NULL
				ev.ActorType, ev.ActorID, ev.ResourceType, ev.ResourceID = "service", "gateway-service", "gateway", corr
			case 1:
				ev.ActorType, ev.ActorID, ev.ResourceType, ev.ResourceID = "user", "ünï-"+long("u", 200), "pod", "ns/pod-"+long("p", 240)
				ev.ActorIP, ev.Namespace, ev.ClusterID = "10.0.0.1", "ns-ü", "cluster-"+long("c", 247)
				ev.ErrorCode, ev.ErrorMessage = "E_ÜNÏ", long("é😀", (64<<10)/6)
				ev.DurationMS = &maxDur
			case 2:
				ev.ActorIP, ev.Namespace = "2001:db8::1", "ns"
				ev.DurationMS = &zero
				ev.IsSensitive = true
				ev.Category, ev.Type, ev.Action, ev.Outcome, ev.Severity = "workflow", "workflow.selected", "selected", "failure", "critical"
			case 3:
				ev.Outcome, ev.Version = "pending", "2.0"
				// Another category's default actor, stored as NULL.
				ev.Category, ev.ActorID, ev.ResourceType = "notification", "notification-service", "notification"
			}
			if prev != nil && s%2 == 1 {
				id, d := prev.ID, audit.Time(prev.Date.Std())
				ev.ParentID, ev.ParentDate = &id, &d
			}
			_, err := st.InsertEvents(ctx, []*audit.Event{ev})
			require.NoError(t, err, "event %d", i)
			all = append(all, ev)
			prev = ev
		}
	}
	// Empty strings where the write path stores NULL: written by hand,
	// as an older writer or a restore might have.
	_, err = st.Pool().Exec(ctx, `INSERT INTO audit_events (`+archiveTestColumns+`)
		SELECT gen_random_uuid(), event_date, event_timestamp, '', event_type, event_category, event_action,
			event_outcome, correlation_id, event_data, '', '', '', '', '', NULL, NULL, '', '', severity,
			NULL, '', '', retention_days, is_sensitive, chain_seq + 1000, event_hash, '\x', hash_algorithm,
			legal_hold, NULL, NULL, NULL, created_at
		FROM audit_events WHERE event_id = $1`, all[0].ID)
	require.NoError(t, err)
	_, err = st.PlaceHold(ctx, corrs[4], "investigation ünï 😀", "auditor-é", time.Now())
	require.NoError(t, err)

	// The event path, as the job read a month before.
	before := map[[16]byte]archive.Row{}
	for _, corr := range corrs {
		evs, err := st.CorrelationEvents(ctx, corr, 100)
		require.NoError(t, err)
		for i := range evs {
			row, err := archive.RowOf(&evs[i])
			require.NoError(t, err)
			before[row.EventID] = row
		}
	}
	require.Len(t, before, len(all)+1)

	s, leader, err := st.OpenArchive(ctx)
	require.NoError(t, err)
	require.True(t, leader)
	defer s.Close(ctx)
	for _, memory := range []int64{0, 64 << 10} { // in memory; spilled to runs
		t.Run(fmt.Sprintf("memory %d", memory), func(t *testing.T) {
			var got, want []archive.Row
			err := s.EachRow(ctx, month, archive.SortOptions{TempDir: t.TempDir(), Memory: memory}, func(r *archive.Row) error {
				got = append(got, *r)
				want = append(want, before[r.EventID])
				return nil
			})
			require.NoError(t, err)
			require.Len(t, got, len(all)+1)
			for i := range got {
				require.Equal(t, want[i], got[i], "row %d (%s #%d)", i, got[i].CorrelationID, got[i].ChainSeq)
			}
			held := 0
			for _, r := range got {
				if r.LegalHold {
					held++
					require.NotNil(t, r.LegalHoldPlacedAt)
				}
			}
			require.Equal(t, 6, held, "the hold's columns are among those compared")
			assert.Equal(t, parquetOf(t, want), parquetOf(t, got), "the Parquet files differ")
		})
	}
}

func parquetOf(t *testing.T, rows []archive.Row) []byte {
	t.Helper()
	var b bytes.Buffer
	w := archive.NewFileWriter(&b, 7)
	for _, r := range rows {
		require.NoError(t, w.Write(r))
	}
	require.NoError(t, w.Close())
	return b.Bytes()
}

// archiveTestColumns are the columns of audit_events in the store's order.
const archiveTestColumns = `event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, actor_ip,
	resource_type, resource_id, parent_event_id, parent_event_date, namespace, cluster_id,
	severity, duration_ms, error_code, error_message, retention_days, is_sensitive,
	chain_seq, event_hash, previous_event_hash, hash_algorithm, legal_hold, legal_hold_reason,
	legal_hold_placed_by, legal_hold_placed_at, created_at`
