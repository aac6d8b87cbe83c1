package check

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
	"unicode/utf8"
)

// Header is one record header as sent or read.
type Header struct {
	Key   string
	Value []byte
}

// Rec is a record, client-neutral. Before sending, Partition is the partition asked for
// (Any to let the partitioner choose) and Timestamp is zero unless the scenario sets one;
// once acknowledged, the family fills in Partition and Offset from the acknowledgement.
// Records read back carry where they were read.
type Rec struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// Any asks the producer's partitioner to choose the partition.
const Any int32 = -1

// Numbered returns count records keyed k-<prefix><i> with values v-<prefix><i>.
func Numbered(count int, prefix string) []Rec {
	recs := make([]Rec, count)
	for i := range recs {
		recs[i] = Rec{Key: fmt.Appendf(nil, "k-%s%d", prefix, i), Value: fmt.Appendf(nil, "v-%s%d", prefix, i), Partition: Any}
	}
	return recs
}

// ToPartition returns Numbered records all asked for partition p.
func ToPartition(count int, prefix string, p int32) []Rec {
	recs := Numbered(count, prefix)
	for i := range recs {
		recs[i].Partition = p
	}
	return recs
}

// KeysHeadersNulls returns the keys-headers-nulls records: 60 records whose 5-byte binary keys
// cover all 256 byte values, every tenth key null, every seventh value null, and two headers
// with the same key each, the second with an empty value.
func KeysHeadersNulls() []Rec {
	var recs []Rec
	keyed := 0
	for i := range 60 {
		var key []byte
		if i%10 != 3 {
			key = make([]byte, 5)
			for b := range key {
				key[b] = byte((keyed*5 + b) % 256)
			}
			keyed++
		}
		var value []byte
		if i%7 != 5 {
			value = []byte{byte(i), 0, 0xff, byte(255 - i)}
		}
		headers := []Header{{"h", []byte{byte(i), 0, 0x80}}, {"h", []byte{}}}
		recs = append(recs, Rec{Key: key, Value: value, Headers: headers, Partition: Any})
	}
	return recs
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// Show prints a key or value for a reason: 'text' when short printable, else its length.
func Show(b []byte) string {
	if b == nil {
		return "null"
	}
	if len(b) <= 40 && utf8.Valid(b) && printable(b) {
		return "'" + string(b) + "'"
	}
	return fmt.Sprintf("%d bytes", len(b))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 32 || c >= 127 {
			return false
		}
	}
	return true
}

// sameBytes compares keys and values: equal bytes, and null only where null was sent
// (the Go clients read a null as nil and an empty one as a non-nil empty slice).
func sameBytes(got, want []byte) bool {
	return (got == nil) == (want == nil) && bytes.Equal(got, want)
}

// byPartition groups records by partition, keeping their order.
func byPartition(recs []Rec) map[int32][]Rec {
	m := map[int32][]Rec{}
	for _, r := range recs {
		m[r.Partition] = append(m[r.Partition], r)
	}
	return m
}

func counts(m map[int32][]Rec) string {
	keys := make([]int, 0, len(m))
	for p := range m {
		keys = append(keys, int(p))
	}
	sort.Ints(keys)
	s := "{"
	for i, p := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d=%d", p, len(m[int32(p)]))
	}
	return s + "}"
}

// Verify is the round trip: got holds exactly the sent records, per partition in send order,
// each at the partition (and, with offsets, the offset) its acknowledgement gave, with the
// same key, value and headers. Without offsets (acks=0) only values are compared.
func Verify(sent, got []Rec, offsets bool) error {
	want, have := byPartition(sent), byPartition(got)
	if len(got) != len(sent) {
		return Failf("read %d records, sent %d (per partition read %s, sent %s)", len(got), len(sent), counts(have), counts(want))
	}
	for p, w := range want {
		h := have[p]
		if len(h) != len(w) {
			return Failf("partition %d: read %d records, sent %d", p, len(h), len(w))
		}
		for i := range w {
			if err := verifyOne(w[i], h[i], offsets, fmt.Sprintf("partition %d record %d (offset %d)", p, i, h[i].Offset)); err != nil {
				return err
			}
		}
	}
	return nil
}

func verifyOne(s, r Rec, offsets bool, at string) error {
	if offsets && r.Offset != s.Offset {
		return Failf("%s: acknowledged at offset %d", at, s.Offset)
	}
	if !sameBytes(r.Value, s.Value) {
		return Failf("%s: value %s, sent %s", at, Show(r.Value), Show(s.Value))
	}
	if !offsets {
		return nil
	}
	if !sameBytes(r.Key, s.Key) {
		return Failf("%s: key %s, sent %s", at, Show(r.Key), Show(s.Key))
	}
	if len(r.Headers) != len(s.Headers) {
		return Failf("%s: %d headers, sent %d", at, len(r.Headers), len(s.Headers))
	}
	for j, h := range r.Headers {
		// Header values compare as bytes: an empty header value may come back as nil.
		if h.Key != s.Headers[j].Key || !bytes.Equal(h.Value, s.Headers[j].Value) {
			return Failf("%s: header %d %s=%s, sent %s=%s", at, j, h.Key, Show(h.Value), s.Headers[j].Key, Show(s.Headers[j].Value))
		}
	}
	return nil
}

// VerifyRange checks that got is exactly offsets first..len(sent)-1 of partition 0 with the
// values of sent from index first (sent[i] is the record at offset i).
func VerifyRange(got, sent []Rec, first int) error {
	count := len(sent) - first
	if len(got) != count {
		extra := ""
		if len(got) > 0 {
			extra = fmt.Sprintf("; first offset read %d", got[0].Offset)
		}
		return Failf("read %d records, expected %d (offsets %d..%d)%s", len(got), count, first, len(sent)-1, extra)
	}
	for i, r := range got {
		want := int64(first + i)
		if r.Partition != 0 || r.Offset != want {
			return Failf("read partition %d offset %d, expected partition 0 offset %d", r.Partition, r.Offset, want)
		}
		if !sameBytes(r.Value, sent[first+i].Value) {
			return Failf("offset %d: value %s, sent %s", want, Show(r.Value), Show(sent[first+i].Value))
		}
	}
	return nil
}

// CheckAcked checks that sent[i] was acknowledged at partition p, offset i.
func CheckAcked(sent []Rec, p int32) error {
	for i, r := range sent {
		if r.Partition != p || r.Offset != int64(i) {
			return Failf("record %d acknowledged at partition %d offset %d, expected partition %d offset %d", i, r.Partition, r.Offset, p, i)
		}
	}
	return nil
}

// CheckOnce checks that got holds every sent value exactly once, and nothing else.
func CheckOnce(sent, got []Rec, what string) error {
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	want := map[string]bool{}
	for _, r := range sent {
		want[string(r.Value)] = true
	}
	found := 0
	for v, n := range seen {
		if n > 1 {
			return Failf("%s: %s consumed %d times", what, Show([]byte(v)), n)
		}
		if !want[v] {
			return Failf("%s: consumed %d records, including unexpected %s", what, len(got), Show([]byte(v)))
		}
		found++
	}
	if found != len(want) {
		return Failf("%s: consumed %d records, %d of the %d produced", what, len(got), found, len(want))
	}
	return nil
}

// CheckNoDuplicates fails on the first value read twice.
func CheckNoDuplicates(got []Rec) error {
	seen := map[string]bool{}
	for _, r := range got {
		if seen[string(r.Value)] {
			return Failf("duplicate %s at partition %d offset %d", Show(r.Value), r.Partition, r.Offset)
		}
		seen[string(r.Value)] = true
	}
	return nil
}
