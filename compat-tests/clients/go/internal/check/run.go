// Package check is what the Go client families of the compatibility matrix share
// (compat-tests/clients/CONTRACT.md): the scenario list, the runner that bounds each scenario
// and prints its one PASS / FAIL / N/A line, unique names, and client-neutral records with
// the round-trip checks. Each family (cmd/franz-go, cmd/sarama) only talks to its client.
package check

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Scenarios is the contract's list, in the order a run without arguments goes through it.
var Scenarios = []string{
	"metadata",
	"produce-acks-0",
	"produce-acks-1",
	"produce-acks-all",
	"compression-gzip",
	"compression-snappy",
	"compression-lz4",
	"compression-zstd",
	"keys-headers-nulls",
	"large-message",
	"consume-beginning",
	"consume-offset",
	"consume-timestamp",
	"consume-end",
	"idempotent",
	"group-rebalance",
	"commit-resume",
	"admin-topics",
	"admin-configs",
	"delete-records",
	"error-unknown-topic",
	"error-invalid-topic",
	"error-too-large",
	"error-out-of-range",
	"transactions",
}

// ScenarioTimeout bounds every scenario (the contract's 90 s).
const ScenarioTimeout = 90 * time.Second

// Scenario runs one scenario; nil means it passed. It should honour ctx, but the runner
// does not rely on that: a scenario still running at the deadline is abandoned.
type Scenario func(ctx context.Context, env *Env) error

// Env is one scenario's bootstrap address and naming.
type Env struct {
	Bootstrap string
	Family    string
	Scenario  string
	suffix    string
	names     int
}

// Name returns compat-<family>-<scenario>-<suffix>[-n]: a topic or group name that no
// broker has seen before (Apache Kafka keeps topics between runs).
func (e *Env) Name() string {
	e.names++
	name := "compat-" + e.Family + "-" + e.Scenario + "-" + e.suffix
	if e.names > 1 {
		name += "-" + strconv.Itoa(e.names)
	}
	return name
}

// ClientID names the scenario's clients in the broker's logs.
func (e *Env) ClientID() string {
	return "compat-" + e.Family + "-" + e.Scenario + "-" + e.suffix
}

// failure is a scenario's failure, printed as "FAIL name: reason"; it wraps the client's
// error when the reason was formatted with %w, so errors.Is still finds it.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// notApplicable marks a scenario the client cannot do at all, printed as "N/A name: reason".
type notApplicable struct{ reason string }

func (n *notApplicable) Error() string { return n.reason }

// Failf returns a scenario failure with a formatted reason.
func Failf(format string, args ...any) error {
	return &failure{fmt.Errorf(format, args...)}
}

// NotApplicable returns the error that reports the scenario as N/A: only for an API the
// client does not have.
func NotApplicable(format string, args ...any) error {
	return &notApplicable{fmt.Sprintf(format, args...)}
}

// Main runs `BOOTSTRAP [SCENARIO...]` from os.Args with the family's scenarios and exits:
// 0 once every scenario ran (whatever its outcome), 2 on a usage error.
func Main(family string, table map[string]Scenario) {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s BOOTSTRAP [SCENARIO...]\n", os.Args[0])
		os.Exit(2)
	}
	bootstrap := os.Args[1]
	names := os.Args[2:]
	if len(names) == 0 {
		names = Scenarios
	}
	for _, name := range names {
		if _, ok := table[name]; !ok {
			fmt.Fprintf(os.Stderr, "unknown scenario %q; known: %s\n", name, strings.Join(Scenarios, " "))
			os.Exit(2)
		}
	}
	for _, name := range names {
		fmt.Println(outcome(name, runBounded(family, bootstrap, name, table[name])))
	}
	// A scenario that timed out may have left goroutines behind: do not wait for them.
	os.Exit(0)
}

// outcome is the scenario's one stdout line.
func outcome(name string, err error) string {
	var na *notApplicable
	switch {
	case err == nil:
		return "PASS " + name
	case errors.As(err, &na):
		return "N/A " + name + ": " + OneLine(na.reason)
	default:
		return "FAIL " + name + ": " + OneLine(err.Error())
	}
}

// runBounded runs one scenario on its own goroutine and gives up on it at the deadline, so
// a client call that ignores its context cannot hang the program.
func runBounded(family, bootstrap, name string, scenario Scenario) error {
	env := &Env{Bootstrap: bootstrap, Family: family, Scenario: name, suffix: suffix()}
	ctx, cancel := context.WithTimeout(context.Background(), ScenarioTimeout)
	defer cancel()
	started := time.Now()
	fmt.Fprintf(os.Stderr, "== %s %s\n", family, name)
	defer func() { fmt.Fprintf(os.Stderr, "== %s %s: %.1f s\n", family, name, time.Since(started).Seconds()) }()

	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				fmt.Fprintf(os.Stderr, "panic in %s: %v\n%s", name, p, debug.Stack())
				done <- Failf("panic: %v", p)
			}
		}()
		done <- scenario(ctx, env)
	}()
	select {
	case err := <-done:
		if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return Failf("did not finish within %.0f s (%v)", ScenarioTimeout.Seconds(), err)
		}
		return err
	case <-time.After(ScenarioTimeout + 2*time.Second):
		return Failf("did not finish within %.0f s", ScenarioTimeout.Seconds())
	}
}

func suffix() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatInt(rand.Int64N(1<<30), 36)
}

// OneLine folds whitespace and caps the length, so a reason stays on its line.
func OneLine(text string) string {
	line := strings.Join(strings.Fields(text), " ")
	if len(line) > 500 {
		line = line[:500] + "..."
	}
	return line
}

// Logf writes a diagnostic line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Eventually calls probe every 200 ms until it reports done, an error, or `within` passes;
// it then fails with the last state the probe described.
func Eventually(ctx context.Context, within time.Duration, what string, probe func() (done bool, state string, err error)) error {
	deadline := time.Now().Add(within)
	for {
		done, state, err := probe()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return Failf("%s: not so after %s (%s)", what, within, state)
		}
		select {
		case <-ctx.Done():
			return Failf("%s: %v (%s)", what, ctx.Err(), state)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
