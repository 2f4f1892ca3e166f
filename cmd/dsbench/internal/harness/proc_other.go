//go:build !linux

package harness

import "syscall"

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// On other systems the CPU and memory figures are not available; the report
// shows them as 0.

// TreeCPU is 0: /proc is Linux's.
func TreeCPU(int) float64 { return 0 }

// ProcCPU is 0: /proc is Linux's.
func ProcCPU(int) float64 { return 0 }

// SelfCPU is 0: /proc is Linux's.
func SelfCPU() float64 { return 0 }

// PeakRSS is 0: /proc is Linux's.
func PeakRSS(int) int64 { return 0 }

// ResetPeakRSS does nothing: /proc is Linux's.
func ResetPeakRSS(int) {}

// MachineCPU is 0, 0: /proc is Linux's.
func MachineCPU() (busy, steal float64) { return 0, 0 }

// ContextSwitches is 0, 0: /proc is Linux's.
func ContextSwitches(int) (voluntary, involuntary int64) { return 0, 0 }
