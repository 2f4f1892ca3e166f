// Package scenario is what dsbench measures and how it reports it: the
// write benchmark (HTTP load, the raw COPY limit, the chain cost, EXPLAINs;
// write.go), the read benchmark (read*.go) and the workflow catalog
// benchmark (catalog.go), each rendering its markdown report. The processes
// come from package harness, the HTTP load from package loadgen.
package scenario

import (
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
)

// Options are dsbench's flags as the scenarios read them (cmd/dsbench's
// main parses and checks them; its -help describes each).
type Options struct {
	Args []string // the command line without the program name, which each report names

	Duration   time.Duration // measured time of each HTTP scenario
	Warmup     time.Duration // warm-up before each HTTP scenario
	Out        string        // the report file
	ServerBin  string        // the datastorage binary; "" builds ./cmd/datastorage
	ProfileDir string        // where server CPU and heap profiles go
	Keep       bool          // leave everything running until ctx ends
	ServerEnv  []string      // extra DATASTORAGE_…=value for the server
	Only       string        // run only the HTTP scenarios whose name contains this
	SkipRaw    bool          // skip the raw COPY, chain-cost and after-load EXPLAIN parts
	Standby    string        // write benchmark with a streaming standby: "", async or sync (harness.AddStandby)
	SkipSpool  bool          // skip the spool scenario (what WAIT costs; spoolwait.go)
	// Spread is how the write benchmark's events spread over namespaces,
	// clusters and time (loadgen.Spread).
	Spread loadgen.Spread

	ReadEvents      int64         // events the read benchmark loads
	ReadRequests    int           // timed requests per read shape
	ReadBudget      time.Duration // most time spent timing one read shape
	ReadCursorPages int           // pages walked before timing the deep cursor page

	CatalogRequests int // timed requests per catalog search and get shape

	ArchiveEvents int64 // events of the month the archive benchmark archives
	// ArchiveCompare times the ways of reading a month in the archive's
	// order before the archive run (archive_compare.go).
	ArchiveCompare bool
}
