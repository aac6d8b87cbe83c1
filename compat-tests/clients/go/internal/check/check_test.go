package check

import (
	"strings"
	"testing"
)

// acked returns the records as if acknowledged at consecutive offsets of partition 0.
func acked(recs []Rec) []Rec {
	for i := range recs {
		recs[i].Partition, recs[i].Offset = 0, int64(i)
	}
	return recs
}

func TestVerifyCatchesDifferences(t *testing.T) {
	sent := acked(KeysHeadersNulls())
	if err := Verify(sent, clone(sent), true); err != nil {
		t.Fatalf("identical records: %v", err)
	}
	cases := map[string]func(got []Rec) []Rec{
		"value":           func(g []Rec) []Rec { g[0].Value = []byte("x"); return g },
		"null key":        func(g []Rec) []Rec { g[3].Key = []byte{}; return g },
		"null value":      func(g []Rec) []Rec { g[5].Value = []byte{}; return g },
		"header":          func(g []Rec) []Rec { g[1].Headers[0].Key = "other"; return g },
		"offset":          func(g []Rec) []Rec { g[2].Offset = 99; return g },
		"missing record":  func(g []Rec) []Rec { return g[1:] },
		"duplicate":       func(g []Rec) []Rec { return append(g, g[0]) },
		"order":           func(g []Rec) []Rec { g[0], g[1] = g[1], g[0]; return g },
		"other partition": func(g []Rec) []Rec { g[0].Partition = 1; return g },
	}
	for name, change := range cases {
		if err := Verify(sent, change(clone(sent)), true); err == nil {
			t.Errorf("%s: a difference went unnoticed", name)
		}
	}
}

func TestKeysCoverEveryByte(t *testing.T) {
	seen := map[byte]bool{}
	for _, r := range KeysHeadersNulls() {
		for _, b := range r.Key {
			seen[b] = true
		}
	}
	if len(seen) != 256 {
		t.Fatalf("keys cover %d byte values, want 256", len(seen))
	}
}

func TestCheckOnce(t *testing.T) {
	sent := Numbered(3, "")
	if err := CheckOnce(sent, []Rec{sent[2], sent[0], sent[1]}, "all"); err != nil {
		t.Fatalf("every record once: %v", err)
	}
	if err := CheckOnce(sent, []Rec{sent[0], sent[1], sent[1], sent[2]}, "dup"); err == nil || !strings.Contains(err.Error(), "2 times") {
		t.Fatalf("a duplicate: %v", err)
	}
	if err := CheckOnce(sent, sent[:2], "missing"); err == nil {
		t.Fatal("a missing record went unnoticed")
	}
}

func clone(recs []Rec) []Rec {
	out := make([]Rec, len(recs))
	for i, r := range recs {
		out[i] = r
		out[i].Headers = append([]Header(nil), r.Headers...)
	}
	return out
}
