package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// usage is a snapshot of this process's resource use.
type usage struct {
	at  time.Time
	cpu time.Duration
}

func snapshot() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return usage{at: time.Now(), cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
}

// meter measures this process's CPU time and the helpers' from its start.
type meter struct {
	aux    *aux
	u      usage
	auxCPU time.Duration
}

func startMeter(a *aux) meter { return meter{aux: a, auxCPU: a.CPU(), u: snapshot()} }

// stop fills in r's CPU and AuxCPU since the start, and its RSS: the peak
// since the last resetPeakRSS.
func (m meter) stop(r *row) {
	r.CPU, r.RSS, r.AuxCPU = snapshot().cpu-m.u.cpu, peakRSS(), m.aux.CPU()-m.auxCPU
}

// resetPeakRSS returns freed memory to the OS and resets the kernel's peak
// RSS (VmHWM) of this process, so that the next peakRSS covers one
// scenario only.
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is VmHWM in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sampleLiveHeap samples the live heap (as of the last collection) every
// 50 ms until stop is called, which returns the largest sample. Peak RSS
// follows it at about twice (the heap goal at GOGC=100), but it is far
// less noisy, so it is what a change to what Baton holds is judged by.
func sampleLiveHeap() (stop func() (peak uint64)) {
	done, ended := make(chan struct{}), make(chan struct{})
	var peak uint64
	go func() {
		defer close(ended)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-ended
		return peak
	}
}

// heapWork is what this process has allocated and collected so far.
type heapWork struct{ allocBytes, gcCycles uint64 }

func readHeapWork() heapWork {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return heapWork{s[0].Value.Uint64(), s[1].Value.Uint64()}
}

// since is w's work after an earlier reading, as a note.
func (w heapWork) since(earlier heapWork) string {
	return fmt.Sprintf("allocated %d MiB in %d collections", (w.allocBytes-earlier.allocBytes)>>20, w.gcCycles-earlier.gcCycles)
}

// profileHeapPeak writes a heap profile to path whenever the live heap
// has grown a tenth past the last one written, until stop is called: the
// file ends up describing the heap near its peak.
func profileHeapPeak(path string) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var written uint64
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if live := sample[0].Value.Uint64(); live > written+written/10 {
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
					written = live
				}
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// startCPUProfile profiles this process into path until stop is called;
// stop may be called more than once.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}), nil
}
