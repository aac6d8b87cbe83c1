package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"lmq/compat-tests/clients/go/internal/check"
)

// toPartition0 creates a 3-partition topic and sends count records to its partition 0,
// which must be acknowledged at offsets 0..count-1.
func toPartition0(ctx context.Context, env *check.Env, count int) (string, []check.Rec, error) {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return "", nil, err
	}
	sent := check.ToPartition(count, "", 0)
	if err := produce(ctx, env, topic, sent); err != nil {
		return "", nil, err
	}
	return topic, sent, check.CheckAcked(sent, 0)
}

// readPartition0 reads `count` records (and then 300 ms more) of partition 0 from offset at.
func readPartition0(ctx context.Context, env *check.Env, topic string, at kgo.Offset, count int, opts ...kgo.Opt) ([]check.Rec, error) {
	cl, err := partitionConsumer(env, topic, map[int32]kgo.Offset{0: at}, opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return check.ReadN(ctx, poller{cl}, count)
}

func consumeBeginning(ctx context.Context, env *check.Env) error {
	topic, sent, err := toPartition0(ctx, env, 50)
	if err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, kgo.NewOffset().AtStart(), 50)
	if err != nil {
		return err
	}
	return check.VerifyRange(got, sent, 0)
}

func consumeOffset(ctx context.Context, env *check.Env) error {
	topic, sent, err := toPartition0(ctx, env, 100)
	if err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, kgo.NewOffset().At(40), 60)
	if err != nil {
		return err
	}
	return check.VerifyRange(got, sent, 40)
}

func consumeTimestamp(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	// Both batches in the past, so no broker bound on future timestamps can reject them.
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	t1 := t0.Add(time.Hour)
	sent := check.ToPartition(100, "", 0)
	for i := range sent {
		if i < 50 {
			sent[i].Timestamp = t0.Add(time.Duration(i) * time.Millisecond)
		} else {
			sent[i].Timestamp = t1.Add(time.Duration(i-50) * time.Millisecond)
		}
	}
	// kgo measures its delivery timeout from each record's timestamp, which is hours old
	// here: without lifting it the records would time out before being sent.
	if err := produce(ctx, env, topic, sent, kgo.RecordDeliveryTimeout(0)); err != nil {
		return err
	}
	if err := check.CheckAcked(sent, 0); err != nil {
		return err
	}
	if err := offsetForTime(ctx, env, topic, t1); err != nil {
		return err
	}
	// The consumer's own offsets-for-times start: AfterMilli lists the offset itself.
	got, err := readPartition0(ctx, env, topic, kgo.NewOffset().AfterMilli(t1.UnixMilli()), 50)
	if err != nil {
		return err
	}
	if err := check.VerifyRange(got, sent, 50); err != nil {
		return err
	}
	for _, r := range got {
		if want := sent[r.Offset].Timestamp; !r.Timestamp.Equal(want) {
			return check.Failf("offset %d: timestamp %d, sent %d", r.Offset, r.Timestamp.UnixMilli(), want.UnixMilli())
		}
	}
	return nil
}

// offsetForTime checks that kadm's offsets-for-times for t1 on partition 0 is offset 50.
func offsetForTime(ctx context.Context, env *check.Env, topic string, t1 time.Time) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	listed, err := adm.ListOffsetsAfterMilli(ctx, t1.UnixMilli(), topic)
	if err != nil {
		return check.Failf("ListOffsetsAfterMilli(T1): %v", err)
	}
	o, ok := listed.Lookup(topic, 0)
	switch {
	case !ok:
		return check.Failf("ListOffsetsAfterMilli(T1) returned nothing for partition 0")
	case o.Err != nil:
		return check.Failf("ListOffsetsAfterMilli(T1) for partition 0: %v", o.Err)
	case o.Offset != 50:
		return check.Failf("ListOffsetsAfterMilli(T1) returned offset %d, expected 50", o.Offset)
	case o.Timestamp != t1.UnixMilli():
		return check.Failf("ListOffsetsAfterMilli(T1) returned timestamp %d, expected %d", o.Timestamp, t1.UnixMilli())
	}
	return nil
}

func consumeEnd(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 20)
	if err != nil {
		return err
	}
	watch := newFetchWatch()
	cl, err := partitionConsumer(env, topic, map[int32]kgo.Offset{0: kgo.NewOffset().AtEnd()}, kgo.WithHooks(watch))
	if err != nil {
		return err
	}
	defer cl.Close()
	// kgo has no position call: it is positioned once it lists the end offset and fetches
	// from there, which the hook sees as its first Fetch request.
	if err := awaitFetch(ctx, cl, watch); err != nil {
		return err
	}
	later := check.ToPartition(10, "later-", 0)
	if err := produce(ctx, env, topic, later); err != nil {
		return err
	}
	got, err := check.ReadN(ctx, poller{cl}, 10)
	if err != nil {
		return err
	}
	return check.VerifyRange(got, append(make([]check.Rec, 20), later...), 20)
}

// awaitFetch polls until the watch saw a Fetch request (15 s at most); nothing may come yet.
func awaitFetch(ctx context.Context, cl *kgo.Client, watch *fetchWatch) error {
	deadline := time.After(15 * time.Second)
	for {
		select {
		case <-watch.fetched:
			return nil
		case <-deadline:
			return check.Failf("the consumer at the latest offset sent no Fetch within 15 s")
		default:
		}
		recs, err := poller{cl}.Poll(ctx, 100*time.Millisecond)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			return check.Failf("a consumer at the latest offset read offset %d before anything was produced after it", recs[0].Offset)
		}
	}
}

func deleteRecords(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 100)
	if err != nil {
		return err
	}
	if err := deleteBefore30(ctx, env, topic); err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, kgo.NewOffset().AtStart(), 70)
	if err != nil {
		return err
	}
	if len(got) == 0 || got[0].Offset != 30 {
		first := "nothing"
		if len(got) > 0 {
			first = fmt.Sprintf("offset %d", got[0].Offset)
		}
		return check.Failf("a consumer from the earliest offset starts at %s, expected 30", first)
	}
	if len(got) != 70 {
		return check.Failf("read %d records from offset 30, expected 70", len(got))
	}
	return nil
}

// deleteBefore30 deletes the records of partition 0 before offset 30 and checks that the
// low watermark and the listed start offset are then 30.
func deleteBefore30(ctx context.Context, env *check.Env, topic string) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	var before kadm.Offsets
	before.AddOffset(topic, 0, 30, -1)
	deleted, err := adm.DeleteRecords(ctx, before)
	if err != nil {
		return check.Failf("DeleteRecords: %v", err)
	}
	d, ok := deleted.Lookup(topic, 0)
	switch {
	case !ok:
		return check.Failf("DeleteRecords returned nothing for partition 0")
	case d.Err != nil:
		return check.Failf("DeleteRecords for partition 0: %v", d.Err)
	case d.LowWatermark != 30:
		return check.Failf("DeleteRecords returned low watermark %d, expected 30", d.LowWatermark)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return check.Failf("ListStartOffsets: %v", err)
	}
	if s, _ := starts.Lookup(topic, 0); s.Err != nil || s.Offset != 30 {
		return check.Failf("ListStartOffsets after deleting before 30: offset %d, error %v", s.Offset, s.Err)
	}
	return nil
}

func errorOutOfRange(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 10)
	if err != nil {
		return err
	}
	// NoResetOffset is kgo's auto.offset.reset=none: OFFSET_OUT_OF_RANGE reaches the poll.
	cl, err := partitionConsumer(env, topic, map[int32]kgo.Offset{0: kgo.NewOffset().At(1000)}, kgo.ConsumeResetOffset(kgo.NoResetOffset()))
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	read := 0
	for time.Now().Before(deadline) {
		recs, err := poller{cl}.Poll(ctx, 200*time.Millisecond)
		read += len(recs)
		if errors.Is(err, kerr.OffsetOutOfRange) {
			return nil
		}
		if err != nil {
			return check.Failf("expected OFFSET_OUT_OF_RANGE, got %v", err)
		}
	}
	return check.Failf("no OFFSET_OUT_OF_RANGE within 20 s of polling at offset 1000 (read %d records)", read)
}
