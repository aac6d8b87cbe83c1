package check

import (
	"context"
	"time"
)

// ReadDeadline is how long a read-back waits for records that should be there.
const ReadDeadline = 30 * time.Second

// Poller is a family's consumer: Poll waits up to `wait` for records and returns what came
// (possibly nothing); an error is one the client reported while consuming.
type Poller interface {
	Poll(ctx context.Context, wait time.Duration) ([]Rec, error)
}

// ReadN polls until count records came or ReadDeadline passed, then polls 300 ms more so
// that records beyond the expected ones are caught too.
func ReadN(ctx context.Context, p Poller, count int) ([]Rec, error) {
	got, err := readUntil(ctx, p, ReadDeadline, func(got []Rec) bool { return len(got) >= count })
	if err != nil {
		return got, err
	}
	more, err := readUntil(ctx, p, 300*time.Millisecond, func([]Rec) bool { return false })
	return append(got, more...), err
}

// ReadAll reads until at least `expected` records came and every partition was read up to
// the end offset `ends` reports then (so nothing beyond what was expected stays unread),
// or until ReadDeadline passed.
func ReadAll(ctx context.Context, p Poller, expected int, ends func(ctx context.Context) (map[int32]int64, error)) ([]Rec, error) {
	deadline := time.Now().Add(ReadDeadline)
	got, err := readUntil(ctx, p, ReadDeadline, func(got []Rec) bool { return len(got) >= expected })
	if err != nil {
		return got, err
	}
	end, err := ends(ctx)
	if err != nil {
		return got, err
	}
	reached := func(recs []Rec) bool {
		next := map[int32]int64{}
		for _, r := range recs {
			next[r.Partition] = r.Offset + 1
		}
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	if reached(got) {
		return got, nil
	}
	more, err := readUntil(ctx, p, time.Until(deadline)+time.Second, func(m []Rec) bool { return reached(append(got, m...)) })
	return append(got, more...), err
}

// readUntil polls until done holds for what came, `within` passed, or the client erred.
func readUntil(ctx context.Context, p Poller, within time.Duration, done func([]Rec) bool) ([]Rec, error) {
	var got []Rec
	deadline := time.Now().Add(within)
	for !done(got) && time.Now().Before(deadline) && ctx.Err() == nil {
		wait := min(200*time.Millisecond, time.Until(deadline))
		recs, err := p.Poll(ctx, max(wait, time.Millisecond))
		got = append(got, recs...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}
