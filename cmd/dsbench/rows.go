package main

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// insertColumns are the columns the store writes, in its order.
var insertColumns = store.BatchInsertColumns()

// unnestInsertSQL is the store's batch INSERT, which the benchmark runs
// without the chain statements around it.
var unnestInsertSQL = store.BatchInsertSQL()

// onConflictInsertSQL is the same with ON CONFLICT DO NOTHING, the store's
// statement before it dropped the clause (see experiments).
var onConflictInsertSQL = unnestInsertSQL + "\nON CONFLICT (event_id, event_date) DO NOTHING"

// fakeHash stands in for event_hash where the chain is not computed: the
// same length as a real SHA-256 digest, stored as bytea (migration 00005).
var fakeHash = must(hex.DecodeString("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))

// noHash is the stored previous_event_hash of a chain's first link.
var noHash = []byte{}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// stored is the stored form of a column that holds NULL for its default, as
// the store writes it (internal/store/stored.go): nil when s is dflt.
func stored(s, dflt string) pgtype.Text { return pgtype.Text{String: s, Valid: s != dflt} }

// storedActorID is actor_id as the store writes it: NULL for the
// category's default actor.
func storedActorID(e *audit.Event) pgtype.Text {
	return stored(e.ActorID, e.Category+"-service")
}

// decodeEvents turns request bodies into events exactly as the API does.
func decodeEvents(bodies [][]byte) ([]*audit.Event, error) {
	v := &audit.Validator{MaxAge: 168 * time.Hour, MaxSkew: time.Hour}
	out := make([]*audit.Event, 0, len(bodies))
	for _, b := range bodies {
		ev, fe, err := v.DecodeOne(b)
		if err != nil {
			return nil, err
		}
		if fe != nil {
			return nil, fmt.Errorf("generated event is invalid: %v", fe)
		}
		out = append(out, ev)
	}
	return out, nil
}

// rowOf fills row (len(insertColumns)) with e's values for COPY, with a
// fresh id and a stand-in hash.
func rowOf(row []any, e *audit.Event, id uuid.UUID, seq int64) {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var dur any
	if e.DurationMS != nil {
		dur = *e.DurationMS
	}
	row[0], row[1], row[2] = pgtype.UUID{Bytes: id, Valid: true}, e.Date.Std(), e.Timestamp.Std()
	row[3], row[4], row[5], row[6], row[7] = e.Version, e.Type, e.Category, e.Action, e.Outcome
	row[8], row[9], row[10], row[11] = e.CorrelationID, []byte(e.Data), stored(e.ActorType, "service"), storedActorID(e)
	row[12], row[13], row[14] = opt(e.ActorIP), stored(e.ResourceType, e.Category), stored(e.ResourceID, e.CorrelationID)
	row[15], row[16] = nil, nil
	row[17], row[18], row[19], row[20] = opt(e.Namespace), opt(e.ClusterID), e.Severity, dur
	row[21], row[22], row[23], row[24] = opt(e.ErrorCode), opt(e.ErrorMessage), e.RetentionDays, e.IsSensitive
	row[25], row[26], row[27], row[28] = seq, fakeHash, noHash, audit.AlgSHA256
}

// columnsOf turns events into the 29 array parameters of unnestInsertSQL,
// with fresh ids and stand-in hashes, in the store's stored form.
func columnsOf(events []*audit.Event) []any {
	n := len(events)
	ids := make([]pgtype.UUID, n)
	dates := make([]time.Time, n)
	stamps := make([]time.Time, n)
	texts := make([][]string, 8)
	for i := range texts {
		texts[i] = make([]string, n)
	}
	defaulted := make([][]pgtype.Text, 4)
	for i := range defaulted {
		defaulted[i] = make([]pgtype.Text, n)
	}
	data := make([][]byte, n)
	opts := make([][]pgtype.Text, 5)
	for i := range opts {
		opts[i] = make([]pgtype.Text, n)
	}
	parentIDs := make([]pgtype.UUID, n)
	parentDates := make([]pgtype.Date, n)
	durations := make([]pgtype.Int4, n)
	retention := make([]int32, n)
	sensitive := make([]bool, n)
	seqs := make([]int64, n)
	hashes := make([][]byte, n)
	prevHashes := make([][]byte, n)
	opt := func(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }
	for i, e := range events {
		ids[i] = pgtype.UUID{Bytes: uuid.Must(uuid.NewV7()), Valid: true}
		dates[i], stamps[i] = e.Date.Std(), e.Timestamp.Std()
		for j, s := range []string{e.Version, e.Type, e.Category, e.Action, e.Outcome, e.CorrelationID,
			e.Severity, audit.AlgSHA256} {
			texts[j][i] = s
		}
		for j, s := range []pgtype.Text{stored(e.ActorType, "service"), storedActorID(e),
			stored(e.ResourceType, e.Category), stored(e.ResourceID, e.CorrelationID)} {
			defaulted[j][i] = s
		}
		data[i] = e.Data
		for j, s := range []string{e.ActorIP, e.Namespace, e.ClusterID, e.ErrorCode, e.ErrorMessage} {
			opts[j][i] = opt(s)
		}
		if e.DurationMS != nil {
			durations[i] = pgtype.Int4{Int32: *e.DurationMS, Valid: true}
		}
		retention[i], sensitive[i], seqs[i] = e.RetentionDays, e.IsSensitive, int64(i+1)
		hashes[i], prevHashes[i] = fakeHash, noHash
	}
	return []any{ids, dates, stamps, texts[0], texts[1], texts[2], texts[3], texts[4], texts[5],
		data, defaulted[0], defaulted[1], opts[0], defaulted[2], defaulted[3], parentIDs, parentDates,
		opts[1], opts[2], texts[6], durations, opts[3], opts[4], retention, sensitive,
		seqs, hashes, prevHashes, texts[7]}
}
