package loadgen

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// standInHash stands in for event_hash where the chain is not computed: a
// SHA-256-sized digest in the API's form (lowercase hex), which the store
// encodes as it encodes a real one.
const standInHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// DecodeEvents turns request bodies into events exactly as the API does.
func DecodeEvents(bodies [][]byte) ([]*audit.Event, error) {
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

// StampUnchained gives events what the write path fills in before the
// statement (a fresh id, chain position seq(i), a stand-in hash, the first
// link's empty previous hash), so that store.CopyRows and
// store.BatchInsertArgs encode them as rows, without computing the chain.
func StampUnchained(events []*audit.Event, seq func(i int) int64) {
	for i, e := range events {
		e.ID = uuid.Must(uuid.NewV7())
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = seq(i), standInHash, nil, audit.AlgSHA256
	}
}
