package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/query"
)

// retryAfter is what a 503 tells clients to wait. Short, because the usual
// cause (a full queue, a database failover) clears in seconds.
const retryAfter = 2 * time.Second

type batchCreated struct {
	EventIDs []string `json:"event_ids"`
	Message  string   `json:"message"`
}

// eventCreated is the 201 to a single event. writeOne writes it with
// appendEventCreated; this type is the shape that encoder is held to.
type eventCreated struct {
	EventID        string     `json:"event_id"`
	EventTimestamp audit.Time `json:"event_timestamp"`
	Message        string     `json:"message"`
}

type accepted struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (a *API) writeBatch(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	events, fe, err := a.validator.DecodeBatch(body, a.maxBatch)
	if err != nil || fe != nil {
		a.invalidBody(w, r, err, fe, "events")
		return
	}
	applyCaller(r.Context(), events) // auth: a person is the actor (CONTRACT §2.1)
	outcome, err := a.ingest.Submit(r.Context(), events)
	if err != nil {
		a.writeFailed(w, r, err, true)
		return
	}
	_ = outcome // a spooled batch still answers 201: CONTRACT §3
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID.String()
	}
	writeJSON(w, http.StatusCreated, batchCreated{
		EventIDs: ids,
		Message:  fmt.Sprintf("%d audit events created successfully", len(events)),
	})
}

func (a *API) writeOne(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	ev, fe, err := a.validator.DecodeOne(body)
	if err != nil || fe != nil {
		a.invalidBody(w, r, err, fe, "event")
		return
	}
	one := []*audit.Event{ev}
	applyCaller(r.Context(), one) // auth: a person is the actor (CONTRACT §2.1)
	outcome, err := a.ingest.Submit(r.Context(), one)
	if err != nil {
		a.writeFailed(w, r, err, false)
		return
	}
	if outcome == ingest.Queued {
		writeJSON(w, http.StatusAccepted, accepted{Status: "accepted", Message: "audit event queued for async processing"})
		return
	}
	writeBody(w, http.StatusCreated, appendEventCreated(make([]byte, 0, eventCreatedSize), ev.ID, ev.Timestamp))
}

// eventCreatedMessage is the message of every 201 to a single event.
const eventCreatedMessage = "Audit event created successfully"

// eventCreatedSize is the length of appendEventCreated's output: the
// members' names and punctuation, a UUID, a wire timestamp, the message and
// the newline.
const eventCreatedSize = len(`{"event_id":"","event_timestamp":"","message":""}`+"\n") + 36 + len("2006-01-02T15:04:05.000000Z") + len(eventCreatedMessage)

// appendEventCreated appends the 201 answer to a single event, byte for byte
// what writeJSON(eventCreated{…}) writes (a test holds it to that), without
// encoding/json's reflection and its four allocations: this is the answer
// of every lone event, the commonest request of a quiet cluster. None of
// its strings needs escaping (hex digits, a timestamp, a constant).
func appendEventCreated(b []byte, id uuid.UUID, ts audit.Time) []byte {
	b = append(b, `{"event_id":`...)
	b = audit.AppendJSONUUID(b, id)
	b = append(b, `,"event_timestamp":"`...)
	b = ts.AppendWire(b)
	b = append(b, `","message":"`+eventCreatedMessage+`"}`...)
	return append(b, '\n')
}

// readBody reads the whole request body up to the configured limit; past it
// the client gets 413 and the connection is not read further.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := readAll(http.MaxBytesReader(w, r.Body, a.maxBody), r.ContentLength, a.maxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, r, kindTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", a.maxBody), nil)
			return nil, false
		}
		// The error names the connection's addresses (read tcp
		// 10.0.0.5:8080->...): not for the client's eyes.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.Header().Set("Connection", "close")
			writeProblem(w, r, kindRequestTimeout, "the request body did not arrive in time; nothing was written", nil)
			return nil, false
		}
		writeProblem(w, r, kindValidation, "the request body could not be read to its end; nothing was written", map[string]string{"body": "could not be read"})
		return nil, false
	}
	return body, true
}

// presizeMax bounds the buffer readAll allocates on a client's word alone
// (its Content-Length), before any byte arrived: a client announcing the
// body limit on many connections and sending nothing must not make the
// server hold that much memory for each. Single events and small batches
// fit; a larger body grows as it arrives, as io.ReadAll's would.
const presizeMax = 64 << 10

// readAll reads r to its end. A body that announced its length (nearly
// every one) of up to presizeMax bytes is read into one buffer of that
// size, plus one byte to see the end, instead of io.ReadAll's growing ones
// (three allocations and two copies for a 700-byte event). A length past
// limit is refused by the MaxBytesReader while reading.
func readAll(r io.Reader, length, limit int64) ([]byte, error) {
	if length <= 0 || length > min(limit, presizeMax) {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, length+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// Longer than announced (a body cannot be, net/http frames it
			// by the length): read on as io.ReadAll would.
			rest, err := io.ReadAll(r)
			return append(b, rest...), err
		}
	}
}

// invalidBody answers a body that failed decoding or validation.
func (a *API) invalidBody(w http.ResponseWriter, r *http.Request, err error, fe audit.FieldErrors, noun string) {
	var tooMany *audit.BatchTooLargeError
	switch {
	case errors.As(err, &tooMany):
		a.metrics.validationFailure("body")
		writeProblem(w, r, kindBatchSize, tooMany.Error(), map[string]string{"body": tooMany.Error()})
	case err != nil:
		a.metrics.validationFailure("body")
		writeProblem(w, r, kindValidation, err.Error(), map[string]string{"body": err.Error()})
	default:
		for k := range fe {
			a.metrics.validationFailure(k)
		}
		writeProblem(w, r, kindValidation, fmt.Sprintf("the %s failed validation in %d field(s); nothing was written", noun, len(fe)), fe)
	}
}

// writeFailed answers a Submit error.
func (a *API) writeFailed(w http.ResponseWriter, r *http.Request, err error, batch bool) {
	var missing *ingest.MissingParentsError
	var conflicts *ingest.ConflictsError
	var rejected *ingest.RejectedError
	switch {
	case errors.As(err, &missing):
		fe := audit.FieldErrors{}
		for _, i := range missing.Indices {
			key := "parent_event_id"
			if batch {
				key = "[" + strconv.Itoa(i) + "]." + key
			}
			fe[key] = "no event with this id exists (a parent must be stored before, or earlier in the same batch)"
			a.metrics.validationFailure(key)
		}
		writeProblem(w, r, kindValidation, "parent event not found; nothing was written", fe)
	case errors.As(err, &conflicts):
		fe := audit.FieldErrors{}
		for _, i := range conflicts.Indices {
			key := "event_id"
			if batch {
				key = "[" + strconv.Itoa(i) + "]." + key
			}
			fe[key] = "an event with this event_id is already stored with other content (an id names one event; a retry must repeat the event unchanged)"
		}
		writeProblem(w, r, kindConflict, "event_id already used by another event; nothing was written", fe)
	case errors.As(err, &rejected):
		// Validation is meant to catch everything the database would refuse,
		// but the database has the last word (a constraint an operator
		// added): the data is refused, whole, naming the element.
		key := "body"
		if batch && rejected.Index >= 0 {
			key = "[" + strconv.Itoa(rejected.Index) + "]"
		}
		a.metrics.validationFailure(key)
		a.log.Warn("the database refused a validated request", "request_id", RequestID(r.Context()), "field", key, "error", rejected.Err)
		writeProblem(w, r, kindValidation, "the database refused the request; nothing was written",
			map[string]string{key: "refused by the database: " + refusal(rejected.Err)})
	case errors.Is(err, ingest.ErrBusy):
		writeUnavailable(w, r, retryAfter, "the write queue is full; retry later")
	case errors.Is(err, ingest.ErrClosed):
		writeUnavailable(w, r, retryAfter, "the server is shutting down; retry on another replica")
	case errors.Is(err, ingest.ErrUnavailable):
		writeUnavailable(w, r, 5*time.Second, spoolRefusal(err))
	case errors.Is(err, ingest.ErrAbandoned):
		// The client is gone; the answer is for the logs and proxies.
		writeUnavailable(w, r, retryAfter, "the request was abandoned while waiting for the write queue; nothing was accepted")
	case failure.ClassOf(err) == failure.Unavailable:
		writeUnavailable(w, r, retryAfter, "the database is unavailable; nothing was accepted, retry later")
	default:
		a.internalError(w, r, err)
	}
}

// refusal is what a client is told of a database refusal: the message and
// SQLSTATE of PostgreSQL's error (a constraint's name, a value out of range).
func refusal(err error) string {
	var sqlErr interface {
		error
		SQLState() string
	}
	if errors.As(err, &sqlErr) {
		return sqlErr.Error()
	}
	return err.Error()
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	p, fe := query.ParseList(r.URL.Query(), a.now())
	if fe != nil {
		for k := range fe {
			a.metrics.validationFailure(k)
		}
		writeProblem(w, r, kindValidation, "invalid query parameters", fe)
		return
	}
	if sr, ok := a.reader.(streamReader); ok {
		a.streamList(w, r, sr, p)
		return
	}
	res, err := a.reader.List(r.Context(), p)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	out := listResponse{Data: res.Events, Pagination: newPagination(res), ArchivedMonths: res.ArchivedMonths}
	if out.Data == nil {
		out.Data = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, out)
}

// streamReader is a Reader that can hand a page over event by event
// (*query.Service is one).
type streamReader interface {
	Stream(ctx context.Context, p query.ListParams, each func(*audit.Event) error) (query.ListResult, error)
}

// streamList writes a list response as the events come from the database:
// a page of 1,000 events of 256 KiB each is 256 MB that would otherwise be
// held twice (rows, then the encoded body) per request (issue 18 item 6).
// The bytes are those of writeJSON(listResponse), pagination last as there.
//
// The status is sent with the first event. A failure before it is an
// ordinary problem (503, 500); a failure after it cannot change the status
// any more, so the response is aborted (the connection is reset, the
// chunked body never ends) and the client sees a broken response, not a
// short list that looks complete.
func (a *API) streamList(w http.ResponseWriter, r *http.Request, sr streamReader, p query.ListParams) {
	started := false
	var buf []byte
	start := func() {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		buf = append(buf[:0], `{"data":[`...)
	}
	res, err := sr.Stream(r.Context(), p, func(e *audit.Event) error {
		if !started {
			start()
		} else {
			buf = append(buf[:0], ',')
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(buf, b...)); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		if !started {
			a.readFailed(w, r, err)
			return
		}
		a.log.Warn("list response aborted after its status was sent", "request_id", RequestID(r.Context()), "error", err)
		panic(http.ErrAbortHandler)
	}
	if !started {
		start()
		_, _ = w.Write(buf)
	}
	tail, err := json.Marshal(newPagination(res))
	if err != nil {
		panic(http.ErrAbortHandler) // our own type always marshals
	}
	out := append([]byte(`],"pagination":`), tail...)
	if len(res.ArchivedMonths) > 0 {
		months, err := json.Marshal(res.ArchivedMonths)
		if err != nil {
			panic(http.ErrAbortHandler) // a []string always marshals
		}
		out = append(append(out, `,"archived_months":`...), months...)
	}
	_, _ = w.Write(append(out, "}\n"...))
}

func newPagination(res query.ListResult) pagination {
	return pagination{
		Limit:      res.Limit,
		Offset:     res.Offset,
		Total:      res.Total,
		TotalExact: res.TotalExact,
		HasMore:    res.HasMore,
		NextCursor: res.NextCursor,
	}
}

type listResponse struct {
	Data       []audit.Event `json:"data"`
	Pagination pagination    `json:"pagination"`
	// ArchivedMonths names the archived months (YYYY-MM) the window
	// reaches and the list did not search (docs/archive.md); absent when
	// none.
	ArchivedMonths []string `json:"archived_months,omitempty"`
}

type pagination struct {
	Limit      int    `json:"limit"`
	Offset     int    `json:"offset"`
	Total      int64  `json:"total"`
	TotalExact bool   `json:"total_is_exact"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("event_id") == "batch" {
		// "/events/batch" is a path of its own (POST only); the mux cannot
		// tell it from an event id for other methods.
		w.Header().Set("Allow", "POST")
		writeProblem(w, r, kindMethodNotAllowed, "method "+r.Method+" is not allowed on "+clip(r.URL.Path, maxEcho)+"; allowed: POST", nil)
		return
	}
	id, err := audit.ParseUUID(r.PathValue("event_id"))
	if err != nil {
		a.metrics.validationFailure("event_id")
		writeProblem(w, r, kindValidation, "event_id must be a UUID", map[string]string{"event_id": "must be a UUID"})
		return
	}
	ev, err := a.reader.Get(r.Context(), id)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ev)
}

// readFailed answers a read error by its class (failure.ClassOf): 404 for
// nothing found, 503 with Retry-After while the database is unavailable or
// too slow, 400 when the database refused a value of the request, 500 for
// anything else — never 503 for a bug, which would have clients retry it
// forever.
func (a *API) readFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, query.ErrNotFound):
		writeProblem(w, r, kindNotFound, "no such audit event", nil)
		return
	case r.Context().Err() != nil:
		// The client left or its deadline passed: nothing is wrong here.
		a.log.Debug("read abandoned", "request_id", RequestID(r.Context()), "error", err)
		writeUnavailable(w, r, retryAfter, "the request ended before the database answered; retry later")
		return
	}
	switch failure.ClassOf(err) {
	case failure.Unavailable:
		a.log.Warn("read failed: database unavailable", "request_id", RequestID(r.Context()), "error", err)
		writeUnavailable(w, r, retryAfter, "the database is unavailable or too slow right now; retry later")
	case failure.Data:
		a.metrics.validationFailure("query")
		writeProblem(w, r, kindValidation, "the database refused a value of the request: "+refusal(err),
			map[string]string{"query": "refused by the database"})
	default:
		a.internalError(w, r, err)
	}
}

func (a *API) internalError(w http.ResponseWriter, r *http.Request, err error) {
	id := RequestID(r.Context())
	a.log.Error("request failed", "request_id", id, "error", err)
	writeProblem(w, r, kindInternal, "the server hit an unexpected error; it has been logged with request id "+id, nil)
}
