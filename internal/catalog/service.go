package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// Store is what the catalog needs of PostgreSQL; *store.Store implements it.
type Store interface {
	RegisterWorkflow(ctx context.Context, rec store.WorkflowRecord, event *audit.Event) (store.WorkflowRecord, error)
	ChangeWorkflowStatus(ctx context.Context, id uuid.UUID, decide func(store.WorkflowRecord) (store.StatusChange, *audit.Event, error)) (store.WorkflowRecord, error)
	GetWorkflow(ctx context.Context, id uuid.UUID) (store.WorkflowRecord, error)
	ListWorkflows(ctx context.Context, f store.WorkflowFilter) ([]store.WorkflowRecord, error)
	SearchWorkflows(ctx context.Context, q store.SearchQuery) ([]store.WorkflowRecord, error)
	InsertDiscovery(ctx context.Context, d store.Discovery) error
	GetDiscovery(ctx context.Context, id uuid.UUID, notBefore time.Time) (store.Discovery, error)
	DeleteDiscoveriesBefore(ctx context.Context, t time.Time) (int64, error)
}

// EventSink takes the search and validation events into the normal write
// pipeline (committed or spooled); an error means neither could take them.
type EventSink interface {
	Emit(ctx context.Context, events []*audit.Event) error
}

// EventSinkFunc adapts a function to EventSink.
type EventSinkFunc func(ctx context.Context, events []*audit.Event) error

// Emit calls f.
func (f EventSinkFunc) Emit(ctx context.Context, events []*audit.Event) error { return f(ctx, events) }

// Weights are the search score's term weights (catalog.weights.*).
type Weights struct {
	Context, Detected, Custom, Text float64
}

// DefaultWeights are CONTRACT §15.4's.
var DefaultWeights = Weights{Context: 1, Detected: 0.5, Custom: 0.5, Text: 1}

// Options configure a Service. Store, Sink and Validator are required.
type Options struct {
	Store Store
	Sink  EventSink
	// Validator builds the catalog's audit events exactly as client events
	// are built (defaults, limits, server ids).
	Validator *audit.Validator
	Weights   Weights
	// DiscoveryTTL is how long a search answer can be validated; 0 means 24h.
	DiscoveryTTL time.Duration
	Registerer   prometheus.Registerer
	Log          *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the workflow catalog (CONTRACT §15). It is safe for concurrent use.
type Service struct {
	store     Store
	sink      EventSink
	validator *audit.Validator
	weights   Weights
	ttl       time.Duration
	metrics   *metrics
	log       *slog.Logger
	now       func() time.Time
}

// New builds the service.
func New(o Options) *Service {
	s := &Service{store: o.Store, sink: o.Sink, validator: o.Validator, weights: o.Weights,
		ttl: o.DiscoveryTTL, metrics: newMetrics(o.Registerer), log: o.Log, now: o.Now}
	if s.ttl <= 0 {
		s.ttl = 24 * time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Actor is who asks: the authenticated caller, "anonymous" without
// authentication. User marks a person rather than a service account.
type Actor struct {
	Name string
	User bool
}

func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Register stores a new workflow version (CONTRACT §15.2). It returns the
// stored version and whether it was created now (false: the same version
// was already registered with identical keys). Errors: *ValidationError,
// ErrConflict, ErrUnavailable.
func (s *Service) Register(ctx context.Context, body []byte, by Actor) (Workflow, bool, error) {
	w, err := DecodeRegistration(body)
	if err != nil {
		s.metrics.registrations.WithLabelValues("invalid").Inc()
		return Workflow{}, false, err
	}
	v, _ := ParseVersion(w.Version)
	now := s.clock()
	w.ID = WorkflowID(w.Name, w.Version)
	w.ContentHash = ContentHash(w.Content)
	w.Status = StatusActive
	w.CreatedAt, w.UpdatedAt = audit.NewTime(now), audit.NewTime(now)
	w.CreatedBy, w.UpdatedBy = by.Name, by.Name
	rec, err := toRecord(w, v)
	if err != nil {
		return Workflow{}, false, fmt.Errorf("catalog: register: %w", err)
	}
	ev, err := s.changeEvent(w, "created", by, now, nil)
	if err != nil {
		return Workflow{}, false, err
	}
	stored, err := s.store.RegisterWorkflow(ctx, rec, ev)
	if errors.Is(err, store.ErrWorkflowExists) {
		existing, derr := fromRecord(stored)
		if derr != nil {
			return Workflow{}, false, fmt.Errorf("catalog: register: %w", derr)
		}
		if sameKeys(existing, w) {
			s.metrics.registrations.WithLabelValues("unchanged").Inc()
			return existing, false, nil
		}
		s.metrics.registrations.WithLabelValues("conflict").Inc()
		return existing, false, fmt.Errorf("catalog: register %s %s: %w", w.Name, w.Version, ErrConflict)
	}
	if err != nil {
		s.metrics.registrations.WithLabelValues("error").Inc()
		return Workflow{}, false, storeErr("register", err)
	}
	s.metrics.registrations.WithLabelValues("created").Inc()
	out, err := fromRecord(stored)
	return out, true, err
}

// sameKeys reports whether two versions have the same create keys: what
// makes a repeated registration idempotent rather than a conflict.
func sameKeys(a, b Workflow) bool {
	// Through a generic decode, so that JSON values PostgreSQL stored in
	// another spelling (1e2 as 100, escapes) still compare equal.
	strip := func(w Workflow) (any, error) {
		w.ID, w.Status, w.StatusReason, w.IsLatest = uuid.Nil, "", "", false
		w.CreatedAt, w.UpdatedAt, w.CreatedBy, w.UpdatedBy = audit.Time{}, audit.Time{}, "", ""
		b, err := json.Marshal(w)
		if err != nil {
			return nil, err
		}
		var v any
		return v, json.Unmarshal(b, &v)
	}
	x, err1 := strip(a)
	y, err2 := strip(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(x, y)
}

// allowed reports whether the lifecycle allows from → to (CONTRACT §15.2):
// among active, disabled and deprecated; any of them to archived; archived
// is final; never to the current status.
func allowed(from, to string) bool {
	if from == to || from == StatusArchived {
		return false
	}
	return slices.Contains([]string{StatusActive, StatusDisabled, StatusDeprecated, StatusArchived}, to)
}

// ChangeStatus moves a version to another status (CONTRACT §15.2). Errors:
// *ValidationError, ErrNotFound, ErrInvalidTransition, ErrUnavailable.
func (s *Service) ChangeStatus(ctx context.Context, rawID string, body []byte, by Actor) (Workflow, error) {
	id, err := uuid.Parse(rawID)
	if err != nil {
		return Workflow{}, fmt.Errorf("catalog: change status: %w", ErrNotFound)
	}
	to, reason, err := decodeStatusChange(body)
	if err != nil {
		return Workflow{}, err
	}
	var from string
	rec, err := s.store.ChangeWorkflowStatus(ctx, id, func(cur store.WorkflowRecord) (store.StatusChange, *audit.Event, error) {
		from = cur.Status
		if !allowed(cur.Status, to) {
			return store.StatusChange{}, nil, fmt.Errorf("catalog: %s → %s: %w", cur.Status, to, ErrInvalidTransition)
		}
		w, err := fromRecord(cur)
		if err != nil {
			return store.StatusChange{}, nil, err
		}
		now := s.clock()
		w.Status = to
		ev, err := s.changeEvent(w, "updated", by, now, map[string]any{"from_status": cur.Status, "to_status": to, "reason": reason})
		return store.StatusChange{Status: to, Reason: reason, By: by.Name, At: now}, ev, err
	})
	switch {
	case errors.Is(err, ErrInvalidTransition):
		return Workflow{}, err
	case err != nil:
		var verr *ValidationError
		if errors.As(err, &verr) {
			return Workflow{}, err
		}
		return Workflow{}, storeErr("change status", err)
	}
	s.metrics.statusChanges.WithLabelValues(from, to).Inc()
	return fromRecord(rec)
}

func decodeStatusChange(body []byte) (string, string, error) {
	m, err := object(body)
	if err != nil {
		return "", "", err
	}
	fe := fieldErrors{}
	for k := range m {
		if k != "status" && k != "reason" {
			fe.add(k, "cannot be changed: versions are immutable, only status (with a reason) can; register a new version")
		}
	}
	to := str(fe, m, "status", "status", 20, true)
	if to != "" && !slices.Contains([]string{StatusActive, StatusDisabled, StatusDeprecated, StatusArchived}, to) {
		fe.add("status", "must be one of active, disabled, deprecated, archived")
	}
	reason := str(fe, m, "reason", "reason", 500, true)
	return to, reason, fe.err()
}

// Get returns one version with its content. Errors: ErrNotFound (also for
// an id that is not a UUID), ErrUnavailable.
func (s *Service) Get(ctx context.Context, rawID string) (Workflow, error) {
	id, err := uuid.Parse(rawID)
	if err != nil {
		return Workflow{}, fmt.Errorf("catalog: get: %w", ErrNotFound)
	}
	rec, err := s.store.GetWorkflow(ctx, id)
	if err != nil {
		return Workflow{}, storeErr("get", err)
	}
	return fromRecord(rec)
}

// Versions returns every version of a name, highest precedence first,
// without content. Errors: ErrNotFound for an unknown name, ErrUnavailable.
func (s *Service) Versions(ctx context.Context, name string) ([]Workflow, error) {
	recs, err := s.store.ListWorkflows(ctx, store.WorkflowFilter{Name: name, Limit: maxVersionsListed})
	if err != nil {
		return nil, storeErr("versions", err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("catalog: versions of %q: %w", name, ErrNotFound)
	}
	return fromRecords(recs)
}

// maxVersionsListed bounds the versions list of one name; a name with more
// versions than this is listed in full by GET /workflows?workflow_name=.
const maxVersionsListed = 10000

// changeEvent builds the audit event of a catalog change, through the same
// validator as client events.
func (s *Service) changeEvent(w Workflow, action string, by Actor, at time.Time, extra map[string]any) (*audit.Event, error) {
	data := map[string]any{
		"event_type":    "datastorage.workflow." + action,
		"workflow_id":   w.ID.String(),
		"workflow_name": w.Name,
		"version":       w.Version,
		"content_hash":  w.ContentHash,
		"status":        w.Status,
	}
	for k, v := range extra {
		data[k] = v
	}
	return s.event(eventSpec{typ: "datastorage.workflow." + action, action: action, outcome: "success",
		correlation: "workflow/" + w.Name, by: by, at: at, resourceType: "Workflow", resourceID: w.ID.String(), data: data})
}

type eventSpec struct {
	typ, action, outcome, correlation string
	by                                Actor
	at                                time.Time
	resourceType, resourceID          string
	data                              map[string]any
}

func (s *Service) event(e eventSpec) (*audit.Event, error) {
	actorType := "service"
	if e.by.User {
		actorType = "user"
	}
	req := map[string]any{
		"version": "1.0", "event_type": e.typ, "event_timestamp": e.at.Format(time.RFC3339Nano),
		"event_category": "workflow", "event_action": e.action, "event_outcome": e.outcome,
		"correlation_id": e.correlation, "event_data": e.data, "actor_type": actorType,
		"actor_id": e.by.Name,
	}
	if e.resourceType != "" {
		req["resource_type"], req["resource_id"] = e.resourceType, e.resourceID
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("catalog: build %s event: %w", e.typ, err)
	}
	ev, fe, err := s.validator.DecodeOne(body)
	if err == nil && len(fe) > 0 {
		err = fmt.Errorf("%v", fe)
	}
	if err != nil {
		// Our own events always validate; reaching this is a bug.
		return nil, fmt.Errorf("catalog: build %s event: %w", e.typ, err)
	}
	return ev, nil
}

// toRecord is the stored form of a version: JSON columns, the sortable
// version key and the label terms of the candidate filter.
func toRecord(w Workflow, v Version) (store.WorkflowRecord, error) {
	r := store.WorkflowRecord{ID: w.ID, Name: w.Name, Version: w.Version, VersionKey: v.Key(),
		Prerelease: len(v.Prerelease) > 0, Title: w.Title, ActionType: w.ActionType, Content: w.Content,
		ContentHash: w.ContentHash, Status: w.Status, CreatedAt: w.CreatedAt.Std(), CreatedBy: w.CreatedBy,
		UpdatedAt: w.UpdatedAt.Std(), UpdatedBy: w.UpdatedBy, LabelTerms: labelTerms(w)}
	var err error
	for _, f := range []struct {
		dst *[]byte
		v   any
	}{{&r.Description, w.Description}, {&r.Labels, w.Labels}, {&r.DetectedLabels, w.DetectedLabels},
		{&r.CustomLabels, w.CustomLabels}, {&r.Execution, w.Execution}, {&r.Parameters, w.Parameters}} {
		if *f.dst, err = json.Marshal(f.v); err != nil {
			return r, err
		}
	}
	return r, nil
}

// labelTerms flattens labels to the lower-cased key=value terms the GIN
// index holds; custom keys get the prefix "custom.".
func labelTerms(w Workflow) []string {
	var terms []string
	for _, k := range MandatoryLabels {
		for _, v := range w.Labels[k] {
			terms = append(terms, k+"="+strings.ToLower(v))
		}
	}
	for k, vs := range w.CustomLabels {
		for _, v := range vs {
			terms = append(terms, "custom."+k+"="+strings.ToLower(v))
		}
	}
	slices.Sort(terms)
	return slices.Compact(terms)
}

func fromRecord(r store.WorkflowRecord) (Workflow, error) {
	w := Workflow{ID: r.ID, Name: r.Name, Version: r.Version, Title: r.Title, ActionType: r.ActionType,
		Content: r.Content, ContentHash: r.ContentHash, Status: r.Status, StatusReason: r.StatusReason,
		IsLatest: r.IsLatest, CreatedAt: audit.NewTime(r.CreatedAt), UpdatedAt: audit.NewTime(r.UpdatedAt),
		CreatedBy: r.CreatedBy, UpdatedBy: r.UpdatedBy}
	for _, f := range []struct {
		src []byte
		dst any
	}{{r.Description, &w.Description}, {r.Labels, &w.Labels}, {r.DetectedLabels, &w.DetectedLabels},
		{r.CustomLabels, &w.CustomLabels}, {r.Execution, &w.Execution}, {r.Parameters, &w.Parameters}} {
		if err := json.Unmarshal(f.src, f.dst); err != nil {
			return w, fmt.Errorf("catalog: stored workflow %s: %w", r.ID, err)
		}
	}
	if w.CustomLabels == nil {
		w.CustomLabels = map[string][]string{}
	}
	if w.Parameters == nil {
		w.Parameters = []Parameter{}
	}
	return w, nil
}

func fromRecords(recs []store.WorkflowRecord) ([]Workflow, error) {
	out := make([]Workflow, 0, len(recs))
	for _, r := range recs {
		w, err := fromRecord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}
