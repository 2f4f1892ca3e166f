package archive

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"math/bits"
	"time"

	"kubernaut.ai/datastorage/internal/integrity"
)

// ManifestFormat names the manifest layout; a reader refuses others.
const ManifestFormat = "datastorage-archive/1"

// Manifest describes one archived month. It is signed with the export key
// (integrity.Signer, Ed25519ph) so that `datastorage verify-archive` checks
// an archive offline with the public key alone.
type Manifest struct {
	Format string `json:"format"`
	// Month is YYYY-MM, the partition's month (event_date).
	Month     string `json:"month"`
	CreatedAt string `json:"created_at"`
	// Events counts the rows of all files; EventsDigest is the SHA-256 of
	// the events' event_hash bytes in (correlation_id, chain_seq) order,
	// which the job compares with PostgreSQL's before it drops anything.
	Events        int64  `json:"events"`
	EventsDigest  string `json:"events_digest"`
	HashAlgorithm string `json:"hash_algorithm,omitempty"`
	Files         []File `json:"files"`
	// Correlations has each archived chain's first and last link of the
	// month (chains cross months), which verification checks the files
	// against; a chain whose links in the month have gaps (late events
	// stamped into another month, links removed by retention) has an entry
	// per run of consecutive links, in chain_seq order. (Lookups do not use
	// it: see Reader.)
	Correlations []Chain `json:"correlations"`
	// Rollups are the month's totals from audit_rollup_hourly, which stay
	// in PostgreSQL (aggregations keep working after the drop).
	Rollups []RollupTotal `json:"rollups"`
	// SignatureAlgorithm, PublicKey and Signature: Signature covers the
	// manifest's JSON as written with Signature empty.
	SignatureAlgorithm string `json:"signature_algorithm"`
	PublicKey          string `json:"public_key"`
	Signature          string `json:"signature"`
}

// File is one Parquet file of a month.
type File struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	Rows   int64  `json:"rows"`
	// First and Last are the file's first and last correlation_id.
	First     string `json:"first_correlation_id"`
	Last      string `json:"last_correlation_id"`
	RowGroups int    `json:"row_groups"`
}

// Chain is one correlation's links in the month.
type Chain struct {
	CorrelationID string `json:"correlation_id"`
	Events        int64  `json:"events"`
	FirstSeq      int64  `json:"first_chain_seq"`
	FirstHash     string `json:"first_event_hash"`
	LastSeq       int64  `json:"last_chain_seq"`
	LastHash      string `json:"last_event_hash"`
	// File is the index in Files of the file holding the chain's links.
	File int `json:"file"`
}

// RollupTotal is the month's count of one combination of the rollup's
// dimensions.
type RollupTotal struct {
	EventType     string `json:"event_type"`
	EventCategory string `json:"event_category"`
	EventOutcome  string `json:"event_outcome"`
	Severity      string `json:"severity"`
	Events        int64  `json:"events"`
}

// Sign fills the signature fields with s's.
func (m *Manifest) Sign(s *integrity.Signer) ([]byte, error) {
	m.SignatureAlgorithm = integrity.SignatureAlgorithm
	m.PublicKey = s.PublicKeyString()
	m.Signature = ""
	unsigned, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("archive: manifest: %w", err)
	}
	if m.Signature, err = s.SignBytes(unsigned); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, fmt.Errorf("archive: manifest: %w", err)
	}
	return out, nil
}

// ErrBadManifest is returned by ParseManifest for a manifest that does not
// parse, is of another format, or whose signature does not verify.
var ErrBadManifest = errors.New("archive: bad manifest")

// ParseManifest reads a manifest and verifies its signature with pub.
func ParseManifest(b []byte, pub ed25519.PublicKey) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadManifest, m.Format, ManifestFormat)
	}
	sig := m.Signature
	m.Signature = ""
	unsigned, err := json.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	m.Signature = sig
	if err := integrity.VerifyBytes(pub, unsigned, sig); err != nil {
		return nil, fmt.Errorf("%w: signature: the manifest was changed or signed with another key", ErrBadManifest)
	}
	return &m, nil
}

// MonthTime parses the manifest's month.
func (m *Manifest) MonthTime() (time.Time, error) { return ParseMonth(m.Month) }

// ParseMonth parses YYYY-MM as the first instant of the month, UTC.
func ParseMonth(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("month %q is not YYYY-MM", s)
	}
	return t.UTC(), nil
}

// MonthString formats a month as YYYY-MM.
func MonthString(t time.Time) string { return t.UTC().Format("2006-01") }

// Digest accumulates the events digest: a count and the SHA-256 of the
// event_hash bytes in (correlation_id, chain_seq) order. Both sides of a
// comparison (the files, PostgreSQL) feed it the same way. It also keeps
// Sums, the order-independent form that PostgreSQL computes in one
// aggregate without sorting the month.
type Digest struct {
	h      hash.Hash
	n      int64
	hi, lo uint64 // the 128-bit two's-complement sum of the first 8 bytes
	xor    int64
}

// NewDigest returns an empty digest.
func NewDigest() *Digest { return &Digest{h: sha256.New()} }

// Add adds one event's hash bytes.
func (d *Digest) Add(eventHash []byte) {
	d.h.Write(eventHash)
	d.n++
	v := int64(word(eventHash, 0))
	var carry uint64
	d.lo, carry = bits.Add64(d.lo, uint64(v), 0)
	d.hi += uint64(v>>63) + carry // sign extension of v, plus the carry
	d.xor ^= int64(word(eventHash, 8))
}

// word reads the big-endian 8 bytes at off, zero-padded on the right as
// PostgreSQL's ('x' || hex)::bit(64) pads a shorter bit string.
func word(b []byte, off int) uint64 {
	var w [8]byte
	if off < len(b) {
		copy(w[:], b[off:])
	}
	return binary.BigEndian.Uint64(w[:])
}

// Count is the number of events added.
func (d *Digest) Count() int64 { return d.n }

// Sum is the hex digest.
func (d *Digest) Sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// Sums returns the order-independent digest of the hashes added.
func (d *Digest) Sums() Sums {
	s := new(big.Int).SetUint64(d.hi)
	s.Lsh(s, 64).Or(s, new(big.Int).SetUint64(d.lo))
	if d.hi>>63 == 1 { // negative in two's complement
		s.Sub(s, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	return Sums{Count: d.n, Sum: s.String(), Xor: d.xor}
}

// Sums is an order-independent digest of a month's event hashes: their
// count, the sum of their first 8 bytes and the XOR of the next 8, each
// read as a signed big-endian 64-bit integer. PostgreSQL computes it with
// one aggregate over the partition (no sort, no row sent), which is what
// lets the drop compare the month with the archive in one pass
// when its watch cannot prove the month unchanged (Session.DropMonth). The ordered Digest stays in the manifest for
// verification offline; Sums only ever compares PostgreSQL with files
// that were just verified.
type Sums struct {
	Count int64
	Sum   string // decimal: the sum does not fit 64 bits
	Xor   int64
}
