// Package audit is the vocabulary every other package of Data Storage
// speaks: the audit [Event] and the notification record ([Notification]),
// how a request body becomes one, and how an event is hashed into its
// correlation's chain. It does no I/O and imports only internal/failure of
// the module, so anything may import it.
//
// # From bytes to events
//
// A [Validator] holds the configured rules (how old or how far in the
// future a timestamp may be, the default retention) and turns request
// bodies into events:
//
//	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
//	ev, fieldErrs, err := v.DecodeOne(body)
//	switch {
//	case err != nil: // not JSON, or not an object: *SyntaxError, ErrNotObject
//	case fieldErrs != nil: // valid JSON that breaks the contract: every field named
//	default: // ev is complete: defaults applied, event_date derived
//	}
//
// [Validator.DecodeBatch] does the same for an array, naming each field by
// its element ("[3].event_type") and refusing more than a maximum of
// elements with a [*BatchTooLargeError]; a batch is all or nothing. The
// decoder is a hand-written scanner rather than encoding/json because it
// runs for every event the service accepts; a differential test and a fuzz
// target hold it to the encoding/json decoder it replaced.
//
// # Canonical form and hashes
//
// An event's hash covers its canonical form ([Event.Canonical]): its
// members in alphabetical order, less the hash fields, the legal hold and
// created_at (a hold must not look like tampering), with event_data
// re-written by [CanonicalData] so that two spellings of the same JSON hash
// alike, numbers written as PostgreSQL's numeric writes them
// ([NormalizeNumber]). The same event gives the same bytes from a client,
// from PostgreSQL or from an export file. A [Hasher] links one canonical form to
// the previous event's hash, with SHA-256 or, given a key, HMAC-SHA256:
//
//	h := audit.NewHasher(key)
//	canon, err := ev.Canonical()
//	ev.Hash = h.Link(previousHash, canon)
//
// The store does this inside the write transaction; internal/integrity
// does it again to verify a chain.
//
// # Refusals
//
// The errors that describe bad data rather than a failing server live here
// too, so that the store can return them and the write path and handlers
// can test for them without importing the store: [*MissingParentError],
// [*InvalidEventError], [*RefusedEventError], [*ConflictError] and
// [ErrNotificationExists],
// each of class failure.Data.
package audit
