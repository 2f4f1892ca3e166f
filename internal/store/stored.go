package store

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// The stored form of an event's columns where it differs from the API's
// (migration 00005, docs/storage.md). Everything that writes audit_events
// goes through toStored*, everything that reads it through fillDefaults and
// hashHex, so the API and the canonical form the hashes cover never see the
// difference.
//
//   - event_hash and previous_event_hash are bytea, the digest's bytes; the
//     API's form is lowercase hex. The first link's previous_event_hash is
//     the empty bytea (hex "").
//   - actor_type, actor_id, resource_type and resource_id are NULL when they
//     hold their contractual default (CONTRACT §2.1): "service",
//     "<event_category>-service" (for the categories of audit.Categories
//     only), event_category and correlation_id.

// defaultActorType is the actor_type a NULL stands for.
const defaultActorType = "service"

// actorSuffix makes the default actor_id of a category.
const actorSuffix = "-service"

// storedActorType is actor_type as stored: NULL for the default.
func storedActorType(e *audit.Event) pgtype.Text {
	return pgtype.Text{String: e.ActorType, Valid: e.ActorType != defaultActorType}
}

// storedActorID is actor_id as stored: NULL when it is the category's
// default actor (and the category is one of the contract's, see
// actorDefaultCategory).
func storedActorID(e *audit.Event) pgtype.Text {
	c := actorDefaultCategory(e.ActorID)
	return pgtype.Text{String: e.ActorID, Valid: c == "" || c != e.Category}
}

// storedResourceType is resource_type as stored: NULL when it is the
// category.
func storedResourceType(e *audit.Event) pgtype.Text {
	return pgtype.Text{String: e.ResourceType, Valid: e.ResourceType != e.Category}
}

// storedResourceID is resource_id as stored: NULL when it is the
// correlation.
func storedResourceID(e *audit.Event) pgtype.Text {
	return pgtype.Text{String: e.ResourceID, Valid: e.ResourceID != e.CorrelationID}
}

// actorDefaultCategory returns the category whose default actor_id is
// actorID ("" when there is none): the rows with actor_id NULL and that
// category are the ones that have it without storing it.
func actorDefaultCategory(actorID string) string {
	c, ok := strings.CutSuffix(actorID, actorSuffix)
	if !ok || !slices.Contains(audit.Categories, c) {
		return ""
	}
	return c
}

// fillDefaults puts back the defaults a row stores as NULL.
func fillDefaults(e *audit.Event, actorType, actorID, resourceType, resourceID pgtype.Text) {
	e.ActorType, e.ActorID = actorType.String, actorID.String
	e.ResourceType, e.ResourceID = resourceType.String, resourceID.String
	if !actorType.Valid {
		e.ActorType = defaultActorType
	}
	if !actorID.Valid {
		e.ActorID = e.Category + actorSuffix
	}
	if !resourceType.Valid {
		e.ResourceType = e.Category
	}
	if !resourceID.Valid {
		e.ResourceID = e.CorrelationID
	}
}

// hashBytes is a hex hash as stored (bytea). "" is the empty bytea, not
// NULL. Only lowercase hex is accepted: it is what reading gives back, and
// the next link's hash covers the hex string itself.
func hashBytes(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || hex.EncodeToString(b) != h {
		return nil, fmt.Errorf("hash %q is not lowercase hex", h)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// hashHex is a stored hash in the API's form, lowercase hex.
func hashHex(b []byte) string { return hex.EncodeToString(b) }

// storedHashes returns the stored form of e's two hashes. The write path
// computes them, so an error means a corrupt chain head
// (audit_chain_heads.last_hash), not a bad request.
func storedHashes(e *audit.Event) (hash, prev []byte, err error) {
	if hash, err = hashBytes(e.Hash); err != nil {
		return nil, nil, fmt.Errorf("event %s: event_hash: %w", e.ID, err)
	}
	p := ""
	if e.PreviousHash != nil {
		p = *e.PreviousHash
	}
	if prev, err = hashBytes(p); err != nil {
		return nil, nil, fmt.Errorf("event %s: previous_event_hash (the chain head of %q): %w", e.ID, e.CorrelationID, err)
	}
	return hash, prev, nil
}
