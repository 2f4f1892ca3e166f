//go:build !linux

package harness

import "syscall"

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// On other systems the CPU and memory figures are not available; the report
// shows them as 0.
func TreeCPU(int) float64 { return 0 }
func ProcCPU(int) float64 { return 0 }
func SelfCPU() float64    { return 0 }
func PeakRSS(int) int64   { return 0 }
func ResetPeakRSS(int)    {}

func MachineCPU() (busy, steal float64) { return 0, 0 }
