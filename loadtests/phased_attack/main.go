// Command phased-attack drives one HTTP target open-loop through a plan of constant-rate
// phases ("rate:seconds,..."), as one client whose connections live through every phase,
// and writes every request's result as vegeta's CSV (send time, status, latency, body...).
//
// vegeta's own CLI has one rate per run; running one process per phase reopened every
// connection at each phase change, so the overload measurement's first second was a
// reconnection storm rather than overload. Built by `make system-deps`; run by
// loadtests/overload.py.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// phase is one constant-rate piece of the plan.
type phase struct {
	rate     float64 // requests per second
	duration time.Duration
}

// plan is the phases in order.
type plan []phase

// maxDebt is how far (in requests) the client may fall behind its schedule before it drops
// the requests it could not send (all in-flight slots busy) instead of sending them late: a
// late burst after the load has dropped would prolong the overload it is measuring.
const maxDebt = 32.0

// pacer is a vegeta.Pacer that offers each phase's rate in turn (open loop, bounded debt).
type pacer struct {
	plan    plan
	dropped float64 // requests given up on because the client was too far behind
}

func parsePlan(text string) (plan, error) {
	var out plan
	for _, piece := range strings.Split(text, ",") {
		rate, seconds, ok := strings.Cut(strings.TrimSpace(piece), ":")
		if !ok {
			return nil, fmt.Errorf("phase %q is not rate:seconds", piece)
		}
		r, err := strconv.ParseFloat(rate, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("phase %q: rate must be a positive number", piece)
		}
		s, err := strconv.ParseFloat(seconds, 64)
		if err != nil || s <= 0 {
			return nil, fmt.Errorf("phase %q: seconds must be a positive number", piece)
		}
		out = append(out, phase{r, time.Duration(s * float64(time.Second))})
	}
	return out, nil
}

func (p plan) total() time.Duration {
	var sum time.Duration
	for _, ph := range p {
		sum += ph.duration
	}
	return sum
}

// hitsBy is how many requests the plan has offered by elapsed.
func (p plan) hitsBy(elapsed time.Duration) float64 {
	hits, start := 0.0, time.Duration(0)
	for _, ph := range p {
		if elapsed < start+ph.duration {
			return hits + ph.rate*(elapsed-start).Seconds()
		}
		hits += ph.rate * ph.duration.Seconds()
		start += ph.duration
	}
	return hits
}

// Rate is the offered rate at elapsed (vegeta.Pacer).
func (p *pacer) Rate(elapsed time.Duration) float64 { return p.plan.rateAt(elapsed) }

func (p plan) rateAt(elapsed time.Duration) float64 {
	start := time.Duration(0)
	for _, ph := range p {
		if elapsed < start+ph.duration {
			return ph.rate
		}
		start += ph.duration
	}
	return 0
}

// Pace says how long to wait before request number hits+1 (vegeta.Pacer). vegeta calls it
// from one goroutine, so the dropped count needs no lock.
func (p *pacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if elapsed >= p.plan.total() {
		return 0, true
	}
	due := p.plan.hitsBy(elapsed) - p.dropped
	if behind := due - float64(hits); behind > maxDebt {
		p.dropped += behind - maxDebt
		due -= behind - maxDebt
	}
	if float64(hits) < due {
		return 0, false // behind schedule (within the debt): send now
	}
	rate := p.plan.rateAt(elapsed)
	wait := time.Duration((float64(hits) + 1 - due) / rate * float64(time.Second))
	return wait, false
}

func main() {
	targets := flag.String("targets", "", "vegeta JSON targets, one per line (sent in turn)")
	planText := flag.String("plan", "", "phases as rate:seconds,rate:seconds,...")
	workers := flag.Uint64("workers", 32, "initial number of in-flight slots")
	maxWorkers := flag.Uint64("max-workers", 128, "most requests in flight")
	timeout := flag.Duration("timeout", 5*time.Second, "a request unanswered after this fails")
	output := flag.String("output", "", "CSV results file")
	flag.Parse()
	if err := run(*targets, *planText, *workers, *maxWorkers, *timeout, *output); err != nil {
		fmt.Fprintln(os.Stderr, "phased-attack:", err)
		os.Exit(1)
	}
}

func run(targetsPath, planText string, workers, maxWorkers uint64, timeout time.Duration, output string) error {
	phases, err := parsePlan(planText)
	if err != nil {
		return err
	}
	source, err := os.Open(targetsPath)
	if err != nil {
		return err
	}
	defer source.Close()
	all, err := vegeta.ReadAllTargets(vegeta.NewJSONTargeter(bufio.NewReader(source), nil, nil))
	if err != nil {
		return fmt.Errorf("reading targets: %w", err)
	}
	out, err := os.Create(output)
	if err != nil {
		return err
	}
	defer out.Close()
	buffered := bufio.NewWriterSize(out, 1<<20)
	encode := vegeta.NewCSVEncoder(buffered)
	attacker := vegeta.NewAttacker(
		vegeta.Workers(workers),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.Timeout(timeout),
		vegeta.KeepAlive(true),
	)
	pace := &pacer{plan: phases}
	for result := range attacker.Attack(vegeta.NewStaticTargeter(all...), pace, phases.total(), "plan") {
		if err := encode(result); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "phased-attack: %.0f requests not sent (client behind schedule)\n", pace.dropped)
	return buffered.Flush()
}
