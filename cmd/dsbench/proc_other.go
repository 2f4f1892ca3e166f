//go:build !linux

package main

import "syscall"

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// On other systems the CPU and memory figures are not available; the report
// shows them as 0.
func treeCPU(int) float64  { return 0 }
func procCPU(int) float64  { return 0 }
func selfCPU() float64     { return 0 }
func peakRSS(int) int64    { return 0 }
func currentRSS(int) int64 { return 0 }
func resetPeakRSS(int)     {}

func machineCPU() (busy, steal float64) { return 0, 0 }
