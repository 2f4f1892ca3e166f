package main

import (
	"net/http"
	"net/http/pprof"
)

// registerPprof adds Go's profiling handlers to the metrics listener's mux
// (server.pprof). They never go on the API port: a profile costs CPU while it
// runs and shows the program's internals.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
