package main

import (
	"testing"
	"time"
)

func TestPercentilesAreNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 30; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p50, p99, most := percentiles(d)
	if p50 != 15*time.Millisecond || p99 != 30*time.Millisecond || most != 30*time.Millisecond {
		t.Fatalf("30 runs of 1..30 ms: p50 %s, p99 %s, max %s; want 15ms, 30ms, 30ms", p50, p99, most)
	}
	p50, p99, _ = percentiles([]time.Duration{7 * time.Millisecond})
	if p50 != 7*time.Millisecond || p99 != 7*time.Millisecond {
		t.Fatalf("one run: p50 %s, p99 %s", p50, p99)
	}
	if d[0] != 30*time.Millisecond {
		t.Fatal("percentiles sorted its caller's slice")
	}
}
