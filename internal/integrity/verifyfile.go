package integrity

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"kubernaut.ai/datastorage/internal/audit"
)

// FileReport is the result of verifying an export file offline.
type FileReport struct {
	Format string
	// SignatureValid is true when the signature verifies with the given key
	// over the exact bytes of the exported events.
	SignatureValid bool
	// SignatureError says why it does not.
	SignatureError string
	// KeyMismatch is true when the file names another public key than the
	// one given (the signature then fails).
	KeyMismatch bool
	// Events counts the exported events; Chains the correlations among them.
	Events int64
	Chains int64
	// Broken lists the first MaxListedProblems links that fail the chain
	// check; BrokenCount counts them all.
	Broken      []TamperedEvent
	BrokenCount int64
	// Metadata is the export's final metadata, as found in the file.
	Metadata ExportMetadata
}

// OK reports whether the file passed every check.
func (r *FileReport) OK() bool { return r.SignatureValid && r.BrokenCount == 0 }

// errNotExport marks a file that is not an export this service wrote.
var errNotExport = errors.New("not a datastorage export")

// VerifyExport checks an export file offline: the signature over the exact
// bytes of its events (see Export.Stream), with pub; and every hash chain
// in it, each from its first exported link (events are ordered by
// correlation, then chain_seq). hasher must match the server's (an HMAC
// key, or none). The format is recognised from the content. An error means
// the file could not be read as an export at all; a file that was changed
// gives a report that is not OK.
func VerifyExport(r io.Reader, pub ed25519.PublicKey, hasher audit.Hasher) (*FileReport, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	first, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotExport, err)
	}
	var head map[string]json.RawMessage
	if json.Unmarshal(first, &head) == nil && head["export_metadata"] != nil && head["events"] == nil {
		return verifyNDJSON(br, head["export_metadata"], pub, hasher)
	}
	// One JSON document (normally on one line).
	return verifyJSON(io.MultiReader(bytes.NewReader(first), br), pub, hasher)
}

// fileChecker runs the chain checks of an export's events in order.
type fileChecker struct {
	checker *linkChecker
	probs   problems
	events  int64
	chains  int64
	corr    string
}

func (c *fileChecker) event(raw []byte) error {
	var e audit.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("event %d: %w", c.events+1, err)
	}
	if c.events == 0 || e.CorrelationID != c.corr {
		c.chains++
		c.corr = e.CorrelationID
	}
	c.events++
	if msg, expected := c.checker.check(&e); msg != "" {
		c.probs.add(&e, expected, msg)
	}
	return nil
}

func (c *fileChecker) report(rep *FileReport, pub ed25519.PublicKey, h *signingHash) {
	rep.Events, rep.Chains = c.events, c.chains
	rep.Broken, rep.BrokenCount = c.probs.list, c.probs.count
	switch {
	case rep.Metadata.Signature == "":
		rep.SignatureError = "the file carries no signature (an incomplete export?)"
	default:
		if err := verifySignature(pub, h, rep.Metadata.Signature); err != nil {
			rep.SignatureError = err.Error()
		} else {
			rep.SignatureValid = true
		}
	}
	if k, err := ParsePublicKey([]byte(rep.Metadata.PublicKey)); err == nil && !k.Equal(pub) {
		rep.KeyMismatch = true
	}
	if rep.SignatureValid && rep.Metadata.TotalEvents != nil && *rep.Metadata.TotalEvents != c.events {
		rep.SignatureValid = false
		rep.SignatureError = fmt.Sprintf("the metadata counts %d events, the file holds %d", *rep.Metadata.TotalEvents, c.events)
	}
}

func verifyNDJSON(br *bufio.Reader, header json.RawMessage, pub ed25519.PublicKey, hasher audit.Hasher) (*FileReport, error) {
	rep := &FileReport{Format: FormatNDJSON}
	if err := json.Unmarshal(header, &rep.Metadata); err != nil {
		return nil, fmt.Errorf("%w: header line: %v", errNotExport, err)
	}
	fc := &fileChecker{checker: newPartialChecker(hasher)}
	signed := newSigningHash()
	// Every line but the last is an event; the last is the trailer. Hold
	// one line back to know which is which, in constant memory.
	var held []byte
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if held != nil {
			signed.Write(held)
			signed.Write([]byte{'\n'})
			if err := fc.event(held); err != nil {
				return nil, err
			}
		}
		held = line
	}
	if held == nil {
		rep.SignatureError = "the file ends after its header: no trailer with the signature (an incomplete export?)"
		return rep, nil
	}
	var trailer struct {
		HashChainVerification *ChainSummary  `json:"hash_chain_verification"`
		ExportMetadata        ExportMetadata `json:"export_metadata"`
	}
	if err := json.Unmarshal(held, &trailer); err != nil || trailer.HashChainVerification == nil {
		// The last line is an event: the export was cut short.
		if err := fc.event(held); err != nil {
			return nil, err
		}
		rep.Metadata.Signature = ""
	} else {
		rep.Metadata = trailer.ExportMetadata
	}
	fc.report(rep, pub, signed)
	return rep, nil
}

func verifyJSON(r io.Reader, pub ed25519.PublicKey, hasher audit.Hasher) (*FileReport, error) {
	rep := &FileReport{Format: FormatJSON}
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("%w: expected a JSON object", errNotExport)
	}
	var events json.RawMessage
	var haveMeta bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotExport, err)
		}
		switch t {
		case "events":
			// A RawMessage receives the value's bytes exactly as they are
			// in the file: what the signature covers.
			err = dec.Decode(&events)
		case "export_metadata":
			haveMeta = true
			err = dec.Decode(&rep.Metadata)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: member %v: %v", errNotExport, t, err)
		}
	}
	if events == nil || !haveMeta {
		return nil, fmt.Errorf("%w: events or export_metadata missing", errNotExport)
	}
	signed := newSigningHash()
	signed.Write(events)
	fc := &fileChecker{checker: newPartialChecker(hasher)}
	var list []json.RawMessage
	if err := json.Unmarshal(events, &list); err != nil {
		return nil, fmt.Errorf("%w: events: %v", errNotExport, err)
	}
	for _, raw := range list {
		if err := fc.event(raw); err != nil {
			return nil, err
		}
	}
	fc.report(rep, pub, signed)
	return rep, nil
}

// readLine reads one line without its "\n", however long; io.EOF when
// nothing is left.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadBytes('\n')
	if err == io.EOF && len(line) > 0 {
		return line, nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}
