package main

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Not parallel: the collector's target is the process's.
func TestServeRaisesTheGCTargetUnlessGOGCIsSet(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	setGCPercent([]string{"PATH=/bin"})
	assert.Equal(t, defaultGCPercent, debug.SetGCPercent(100))

	setGCPercent([]string{"GOGC=50"})
	assert.Equal(t, 100, debug.SetGCPercent(100), "an operator's GOGC wins")
}
