package main

import (
	"testing"
	"time"
)

func TestParsePlan(t *testing.T) {
	p, err := parsePlan("100:5, 400:10")
	if err != nil || len(p) != 2 || p[1].rate != 400 || p[1].duration != 10*time.Second {
		t.Fatalf("parsePlan = %v, %v", p, err)
	}
	for _, bad := range []string{"", "100", "x:5", "100:0", "-1:5"} {
		if _, err := parsePlan(bad); err == nil {
			t.Errorf("parsePlan(%q) accepted", bad)
		}
	}
}

func TestPacerFollowsThePhases(t *testing.T) {
	p := &pacer{plan: plan{{100, time.Second}, {1000, time.Second}}}
	if got := p.plan.hitsBy(1500 * time.Millisecond); got != 600 {
		t.Fatalf("hitsBy(1.5s) = %v, want 600", got)
	}
	if wait, stop := p.Pace(0, 0); wait != 10*time.Millisecond || stop {
		t.Fatalf("first request at 100/s: wait %v stop %v, want 10ms", wait, stop)
	}
	if wait, _ := p.Pace(5*time.Millisecond, 1); wait != 15*time.Millisecond {
		t.Fatalf("second request (due at 20 ms): wait %v, want 15ms", wait)
	}
	if r := p.Rate(1500 * time.Millisecond); r != 1000 {
		t.Fatalf("rate in phase 2 = %v", r)
	}
	if _, stop := p.Pace(2*time.Second, 1100); !stop {
		t.Fatal("the plan should end after its phases")
	}
}

func TestPacerDropsWhatItCannotSendInTime(t *testing.T) {
	p := &pacer{plan: plan{{1000, 10 * time.Second}}}
	// At 1 s, 1000 requests were due but only 100 could be sent: the client may catch up
	// maxDebt of them, the rest are dropped rather than sent late.
	if wait, _ := p.Pace(time.Second, 100); wait != 0 {
		t.Fatalf("behind schedule: wait %v, want 0", wait)
	}
	if p.dropped != 1000-100-maxDebt {
		t.Fatalf("dropped %v, want %v", p.dropped, 1000-100-maxDebt)
	}
	// Once caught up, it waits for the next slot again.
	if wait, _ := p.Pace(time.Second, 100+uint64(maxDebt)); wait != time.Millisecond {
		t.Fatalf("caught up: wait %v, want 1ms", wait)
	}
}
