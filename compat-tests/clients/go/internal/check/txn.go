package check

import (
	"fmt"
	"slices"
)

// TxnValues returns count records for the transactions scenario, asked for partition 0,
// each keyed by its value <prefix>-<i>.
func TxnValues(prefix string, count int) []Rec {
	recs := make([]Rec, count)
	for i := range recs {
		v := fmt.Appendf(nil, "%s-%d", prefix, i)
		recs[i] = Rec{Key: v, Value: v, Partition: 0}
	}
	return recs
}

// CheckValues fails unless got holds exactly the values of want, in that order.
func CheckValues(what string, got []Rec, want ...[]Rec) error {
	var have, expect []string
	for _, r := range got {
		have = append(have, string(r.Value))
	}
	for _, part := range want {
		for _, r := range part {
			expect = append(expect, string(r.Value))
		}
	}
	if !slices.Equal(have, expect) {
		return Failf("%s read %d records %v, expected %d: %v", what, len(have), have, len(expect), expect)
	}
	return nil
}
