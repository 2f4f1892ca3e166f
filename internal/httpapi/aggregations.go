package httpapi

import (
	"context"
	"errors"
	"net/http"

	"kubernaut.ai/datastorage/internal/query"
)

// Aggregator answers aggregations.
type Aggregator interface {
	Aggregate(ctx context.Context, p query.AggregateParams) (any, error)
}

func (a *API) getAggregation(w http.ResponseWriter, r *http.Request) {
	p, fe, err := query.ParseAggregate(r.PathValue("name"), r.URL.Query(), a.now())
	switch {
	case errors.Is(err, query.ErrUnknownAggregation):
		writeProblem(w, r, kindNotFound, err.Error(), nil)
		return
	case fe != nil:
		for k := range fe {
			a.metrics.validationFailure(k)
		}
		writeProblem(w, r, kindValidation, "invalid aggregation parameters", fe)
		return
	}
	res, err := a.aggregator.Aggregate(r.Context(), p)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
