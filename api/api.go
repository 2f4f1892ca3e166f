// Package api holds the machine-readable wire contract.
package api

import (
	"bytes"
	_ "embed"
)

//go:embed openapi.yaml
var spec []byte

// Spec returns the OpenAPI document (a copy).
func Spec() []byte { return bytes.Clone(spec) }
