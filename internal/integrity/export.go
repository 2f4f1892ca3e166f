package integrity

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"kubernaut.ai/datastorage/internal/audit"
)

// Export formats.
const (
	FormatJSON   = "json"
	FormatNDJSON = "ndjson"
)

// What the signature covers, as export_metadata.signed_content says it.
const (
	signedContentJSON   = "the bytes of the events array, from its opening [ to its closing ] inclusive"
	signedContentNDJSON = "the bytes of the event lines, from the first byte after the header line's newline to the newline ending the last event line, inclusive"
)

// ExportMetadata describes an export (CONTRACT §8). Signature and
// TotalEvents are known only once every event is written: the JSON body
// puts this object after the events, and the NDJSON body repeats it, then
// complete, on its last line.
type ExportMetadata struct {
	ExportTimestamp    audit.Time     `json:"export_timestamp"`
	ExportFormat       string         `json:"export_format"`
	TotalEvents        *int64         `json:"total_events,omitempty"`
	Signature          string         `json:"signature,omitempty"`
	SignatureAlgorithm string         `json:"signature_algorithm"`
	SignedContent      string         `json:"signed_content"`
	SignedBytes        *int64         `json:"signed_bytes,omitempty"`
	PublicKey          string         `json:"public_key"`
	ExportedBy         string         `json:"exported_by"`
	QueryFilters       map[string]any `json:"query_filters"`
}

// ChainSummary is the export's hash_chain_verification: every exported
// event's own hash recomputed, and the link to the previous exported event
// checked where the two are consecutive in their chain. A chain that starts
// mid-way (filtered by time or category) is checked from its first exported
// link.
type ChainSummary struct {
	TotalEventsVerified      int64      `json:"total_events_verified"`
	ValidChainEvents         int64      `json:"valid_chain_events"`
	BrokenChainEvents        int64      `json:"broken_chain_events"`
	ChainIntegrityPercentage float64    `json:"chain_integrity_percentage"`
	VerificationTimestamp    audit.Time `json:"verification_timestamp"`
	// TamperedEventIDs lists the first MaxListedProblems broken events.
	TamperedEventIDs []string `json:"tampered_event_ids"`
}

// ExportRequest says what to export.
type ExportRequest struct {
	Filter ExportFilter
	// Format is FormatJSON or FormatNDJSON.
	Format string
	// ExportedBy names the caller.
	ExportedBy string
	// QueryFilters is echoed in the metadata: the filters as given.
	QueryFilters map[string]any
}

// Export is an export ready to stream: its cursor is open and its first
// batch read, so a database failure shows before the first byte is sent.
// Close it.
type Export struct {
	svc     *Service
	req     ExportRequest
	cursor  ExportCursor
	first   []audit.Event
	started audit.Time
}

// exportBatch is the number of events fetched from the cursor at once.
const exportBatch = 500

// OpenExport opens an export.
func (s *Service) OpenExport(ctx context.Context, req ExportRequest) (*Export, error) {
	if req.Format != FormatJSON && req.Format != FormatNDJSON {
		return nil, fmt.Errorf("integrity: unknown export format %q", req.Format)
	}
	cur, err := s.store.OpenExport(ctx, req.Filter, exportBatch)
	if err != nil {
		return nil, err
	}
	first, err := cur.Next(ctx)
	if err != nil {
		cur.Close(ctx)
		return nil, err
	}
	if req.QueryFilters == nil {
		req.QueryFilters = map[string]any{}
	}
	return &Export{svc: s, req: req, cursor: cur, first: first, started: audit.NewTime(s.now())}, nil
}

// ContentType is the media type of the body.
func (x *Export) ContentType() string {
	if x.req.Format == FormatNDJSON {
		return "application/x-ndjson"
	}
	return "application/json"
}

// Close ends the export's database transaction.
func (x *Export) Close(ctx context.Context) { x.cursor.Close(ctx) }

// Stream writes the body to w. progress, if not nil, is called after each
// batch of events has been handed to w (the HTTP handler flushes and
// extends its write deadline there). An error after the first byte leaves
// the body incomplete: without its closing metadata and signature, which
// verification then reports.
//
// Layout (the exact bytes, no insignificant white space):
//
//	json:   {"events":[E1,E2,…],"hash_chain_verification":{…},"export_metadata":{…}}\n
//	ndjson: {"export_metadata":{…header…}}\n E1\n E2\n … {"hash_chain_verification":{…},"export_metadata":{…}}\n
//
// The signature covers [E1,…] for json (brackets and commas included) and
// "E1\nE2\n…" for ndjson.
func (x *Export) Stream(ctx context.Context, w io.Writer, progress func() error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	meta := ExportMetadata{
		ExportTimestamp:    x.started,
		ExportFormat:       x.req.Format,
		SignatureAlgorithm: SignatureAlgorithm,
		PublicKey:          x.svc.signer.PublicKeyString(),
		ExportedBy:         x.req.ExportedBy,
		QueryFilters:       x.req.QueryFilters,
	}
	ndjson := x.req.Format == FormatNDJSON
	if ndjson {
		meta.SignedContent = signedContentNDJSON
		if err := writeJSONLine(bw, map[string]any{"export_metadata": meta}); err != nil {
			return err
		}
	} else {
		meta.SignedContent = signedContentJSON
		if _, err := bw.WriteString(`{"events":`); err != nil {
			return err
		}
	}

	signed := newSigningHash()
	out := io.MultiWriter(bw, signed)
	checker := newPartialChecker(x.svc.hasher)
	var probs problems
	var total int64
	if !ndjson {
		if _, err := io.WriteString(out, "["); err != nil {
			return err
		}
	}
	batch := x.first
	for len(batch) > 0 {
		for i := range batch {
			e := &batch[i]
			if msg, expected := checker.check(e); msg != "" {
				probs.add(e, expected, msg)
			}
			b, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("integrity: export event %s: %w", e.ID, err)
			}
			if !ndjson && total > 0 {
				b = append([]byte{','}, b...)
			}
			if ndjson {
				b = append(b, '\n')
			}
			if _, err := out.Write(b); err != nil {
				return err
			}
			total++
		}
		if progress != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
			if err := progress(); err != nil {
				return err
			}
		}
		var err error
		if batch, err = x.cursor.Next(ctx); err != nil {
			return err
		}
	}
	if !ndjson {
		if _, err := io.WriteString(out, "]"); err != nil {
			return err
		}
	}

	summary := ChainSummary{
		TotalEventsVerified:   total,
		ValidChainEvents:      total - probs.count,
		BrokenChainEvents:     probs.count,
		VerificationTimestamp: audit.NewTime(x.svc.now()),
		TamperedEventIDs:      make([]string, 0, len(probs.list)),
	}
	summary.ChainIntegrityPercentage = percentage(summary.ValidChainEvents, total)
	for _, p := range probs.list {
		summary.TamperedEventIDs = append(summary.TamperedEventIDs, p.EventID)
	}
	sig, err := x.svc.signer.sign(signed)
	if err != nil {
		return err
	}
	meta.TotalEvents, meta.Signature, meta.SignedBytes = &total, sig, &signed.n

	if ndjson {
		err = writeJSONLine(bw, struct {
			HashChainVerification ChainSummary   `json:"hash_chain_verification"`
			ExportMetadata        ExportMetadata `json:"export_metadata"`
		}{summary, meta})
	} else {
		var tail []byte
		tail, err = json.Marshal(struct {
			HashChainVerification ChainSummary   `json:"hash_chain_verification"`
			ExportMetadata        ExportMetadata `json:"export_metadata"`
		}{summary, meta})
		if err == nil {
			// Continue the object opened by {"events":[…] with the tail's
			// members: drop the tail's own opening brace.
			_, err = bw.WriteString("," + string(tail[1:]) + "\n")
		}
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// percentage is valid/total×100, rounded to two decimals; 100 when nothing
// was verified.
func percentage(valid, total int64) float64 {
	if total == 0 {
		return 100
	}
	return math.Round(float64(valid)*10000/float64(total)) / 100
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
