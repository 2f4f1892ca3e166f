package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/catalog"
)

// Catalog is the workflow catalog as the handlers see it (CONTRACT §15);
// *catalog.Service implements it. Its errors are *catalog.ValidationError
// (400) or wrap catalog.ErrNotFound (404), ErrConflict (409 conflict),
// ErrInvalidTransition (409 invalid-transition) or ErrUnavailable (503).
type Catalog interface {
	Register(ctx context.Context, body []byte, by catalog.Actor) (catalog.Workflow, bool, error)
	ChangeStatus(ctx context.Context, id string, body []byte, by catalog.Actor) (catalog.Workflow, error)
	Get(ctx context.Context, id string) (catalog.Workflow, error)
	List(ctx context.Context, q url.Values) (catalog.ListPage, error)
	Versions(ctx context.Context, name string) ([]catalog.Workflow, error)
	Search(ctx context.Context, body []byte, by catalog.Actor) (catalog.SearchResult, error)
	ValidateSelection(ctx context.Context, discoveryID string, body []byte, by catalog.Actor) (catalog.Verdict, error)
}

var kindInvalidTransition = kind{"invalid-transition", http.StatusConflict, "Invalid Status Transition"}

// workflowsPath is the prefix of the catalog's routes.
const workflowsPath = "/api/v1/workflows"

// registerWorkflows adds the catalog routes when c is set. search, by-name
// and discoveries are literal segments, so they win over {workflow_id}.
func (a *API) registerWorkflows(mux *http.ServeMux, c Catalog) {
	if c == nil {
		return
	}
	h := workflowHandlers{a: a, c: c}
	mux.HandleFunc("POST "+workflowsPath, h.register)
	mux.HandleFunc("GET "+workflowsPath, h.list)
	mux.HandleFunc("POST "+workflowsPath+"/search", h.search)
	mux.HandleFunc("GET "+workflowsPath+"/search", h.searchNotGet)
	mux.HandleFunc("POST "+workflowsPath+"/discoveries/{discovery_id}/validate", h.validate)
	mux.HandleFunc("GET "+workflowsPath+"/by-name/{workflow_name}/versions", h.versions)
	mux.HandleFunc("GET "+workflowsPath+"/{workflow_id}", h.get)
	mux.HandleFunc("PATCH "+workflowsPath+"/{workflow_id}", h.changeStatus)
}

type workflowHandlers struct {
	a *API
	c Catalog
}

// actor is the caller as the catalog records it.
func actor(r *http.Request) catalog.Actor {
	id, _ := auth.FromContext(r.Context())
	return catalog.Actor{Name: caller(r), User: id.User}
}

func (h workflowHandlers) register(w http.ResponseWriter, r *http.Request) {
	body, ok := h.a.readBody(w, r)
	if !ok {
		return
	}
	wf, created, err := h.c.Register(r.Context(), body, actor(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, wf)
}

func (h workflowHandlers) list(w http.ResponseWriter, r *http.Request) {
	page, err := h.c.List(r.Context(), r.URL.Query())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if page.Workflows == nil {
		page.Workflows = []catalog.Workflow{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (h workflowHandlers) get(w http.ResponseWriter, r *http.Request) {
	wf, err := h.c.Get(r.Context(), r.PathValue("workflow_id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wf)
}

func (h workflowHandlers) changeStatus(w http.ResponseWriter, r *http.Request) {
	body, ok := h.a.readBody(w, r)
	if !ok {
		return
	}
	wf, err := h.c.ChangeStatus(r.Context(), r.PathValue("workflow_id"), body, actor(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wf)
}

type versionsResponse struct {
	Name     string             `json:"workflow_name"`
	Versions []catalog.Workflow `json:"versions"`
}

func (h workflowHandlers) versions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("workflow_name")
	vs, err := h.c.Versions(r.Context(), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, versionsResponse{Name: name, Versions: vs})
}

func (h workflowHandlers) search(w http.ResponseWriter, r *http.Request) {
	body, ok := h.a.readBody(w, r)
	if !ok {
		return
	}
	res, err := h.c.Search(r.Context(), body, actor(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// searchNotGet answers GET on the search path, which would otherwise reach
// GET {workflow_id} (CONTRACT §15.5).
func (h workflowHandlers) searchNotGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	writeProblem(w, r, kindMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path+"; allowed: POST", nil)
}

func (h workflowHandlers) validate(w http.ResponseWriter, r *http.Request) {
	body, ok := h.a.readBody(w, r)
	if !ok {
		return
	}
	v, err := h.c.ValidateSelection(r.Context(), r.PathValue("discovery_id"), body, actor(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// fail answers a catalog error with its problem.
func (h workflowHandlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	var verr *catalog.ValidationError
	switch {
	case errors.As(err, &verr):
		writeProblem(w, r, kindValidation, "the request breaks the catalog's rules; see field_errors", verr.Fields)
	case errors.Is(err, catalog.ErrNotFound):
		writeProblem(w, r, kindNotFound, notFoundDetail(r), nil)
	case errors.Is(err, catalog.ErrConflict):
		writeProblem(w, r, kindConflict, "this workflow_name and version are already registered with different content or keys; "+
			"versions are immutable: bump the version to register the change", nil)
	case errors.Is(err, catalog.ErrInvalidTransition):
		writeProblem(w, r, kindInvalidTransition, err.Error()+"; allowed moves: among active, disabled and deprecated, "+
			"and any of them to archived (final)", nil)
	case errors.Is(err, catalog.ErrUnavailable):
		h.a.log.Warn("catalog request failed: storage unavailable", "request_id", RequestID(r.Context()), "error", err)
		writeUnavailable(w, r, retryAfter, "the catalog's database is unavailable right now; retry later")
	default:
		h.a.internalError(w, r, err)
	}
}

func notFoundDetail(r *http.Request) string {
	switch {
	case r.PathValue("discovery_id") != "":
		return "no such discovery (unknown, malformed or expired): " + r.PathValue("discovery_id")
	case r.PathValue("workflow_name") != "":
		return "no workflow named " + r.PathValue("workflow_name")
	default:
		return "no workflow version with id " + r.PathValue("workflow_id")
	}
}
