package store

import (
	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/remediation"
)

// The domain packages declare what they need of PostgreSQL; these lines make
// the compiler say so here, next to the SQL, when a method drifts from the
// interface that asks for it. (internal/ingest's Store is checked in
// events_test.go: the store does not import the write path.)
var (
	_ query.Store          = (*Store)(nil)
	_ query.AggregateStore = (*Store)(nil)
	_ query.TimelineStore  = (*Store)(nil)
	_ integrity.Store      = (*Store)(nil)
	_ catalog.Store        = (*Store)(nil)
	_ remediation.Store    = (*Store)(nil)

	_ maintenance.PartitionStore = (*Store)(nil)
	_ maintenance.RetentionStore = (*Store)(nil)
	_ maintenance.RollupStore    = (*Store)(nil)
)

var _ archive.Source = (*Store)(nil)
