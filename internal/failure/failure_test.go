package failure_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"kubernaut.ai/datastorage/internal/failure"
)

type refused struct{}

func (refused) Error() string               { return "refused" }
func (refused) FailureClass() failure.Class { return failure.Data }

func TestClassOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want failure.Class
	}{
		{"nil", nil, failure.None},
		{"unknown error is internal, not an outage", errors.New("can't scan into dest[0]"), failure.Internal},
		{"deadline", fmt.Errorf("store: %w", context.DeadlineExceeded), failure.Unavailable},
		{"canceled", fmt.Errorf("store: %w", context.Canceled), failure.Unavailable},
		{"typed error in the chain", fmt.Errorf("ingest: %w", refused{}), failure.Data},
		{"marked", failure.Mark(errors.New("x"), failure.Unavailable), failure.Unavailable},
		{"outermost mark wins", failure.Mark(fmt.Errorf("w: %w", refused{}), failure.Internal), failure.Internal},
		{"mark wins over a context error it wraps", failure.Mark(context.Canceled, failure.Internal), failure.Internal},
	} {
		assert.Equal(t, tc.want, failure.ClassOf(tc.err), tc.name)
	}
	assert.Nil(t, failure.Mark(nil, failure.Data))
	inner := errors.New("inner")
	assert.ErrorIs(t, failure.Mark(inner, failure.Data), inner, "Mark keeps the chain")
	assert.Equal(t, "unavailable", failure.Unavailable.String())
}
