package loadtest

import (
	"fmt"
	"slices"
	"time"
)

// Dist summarizes a sample of durations.
type Dist struct {
	N   int           `json:"n"`
	Min time.Duration `json:"min"`
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
	Avg time.Duration `json:"avg"`
}

// Summarize computes a Dist of samples given in µs (sorted in place).
func Summarize(us []int32) Dist {
	if len(us) == 0 {
		return Dist{}
	}
	slices.Sort(us)
	var sum int64
	for _, v := range us {
		sum += int64(v)
	}
	at := func(q float64) time.Duration {
		i := int(q*float64(len(us))+0.5) - 1
		i = max(0, min(i, len(us)-1))
		return time.Duration(us[i]) * time.Microsecond
	}
	return Dist{
		N:   len(us),
		Min: time.Duration(us[0]) * time.Microsecond,
		P50: at(0.50),
		P90: at(0.90),
		P99: at(0.99),
		Max: time.Duration(us[len(us)-1]) * time.Microsecond,
		Avg: time.Duration(sum/int64(len(us))) * time.Microsecond,
	}
}

func (d Dist) String() string {
	if d.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s max=%s (min %s, avg %s)",
		d.N, ms(d.P50), ms(d.P90), ms(d.P99), ms(d.Max), ms(d.Min), ms(d.Avg))
}

// ms formats a duration in milliseconds with 2 decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// KiB formats bytes as KiB with one decimal.
func KiB(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// MiB formats bytes as MiB with one decimal.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// addCounts adds src's counts (reasons of refusals and errors) to *dst,
// making it on first use.
func addCounts(dst *map[string]int, src map[string]int) {
	for k, n := range src {
		if *dst == nil {
			*dst = map[string]int{}
		}
		(*dst)[k] += n
	}
}
