package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

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
	if err := produce(env, topic, sent, nil); err != nil {
		return "", nil, err
	}
	return topic, sent, check.CheckAcked(sent, 0)
}

// readPartition0 reads `count` records (and then 300 ms more) of partition 0 from offset at
// (or sarama.OffsetOldest / OffsetNewest).
func readPartition0(ctx context.Context, env *check.Env, topic string, at int64, count int) ([]check.Rec, error) {
	r, err := openReader(env, topic, map[int32]int64{0: at})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return check.ReadN(ctx, r, count)
}

func consumeBeginning(ctx context.Context, env *check.Env) error {
	topic, sent, err := toPartition0(ctx, env, 50)
	if err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, sarama.OffsetOldest, 50)
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
	got, err := readPartition0(ctx, env, topic, 40, 60)
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
	if err := produce(env, topic, sent, nil); err != nil {
		return err
	}
	if err := check.CheckAcked(sent, 0); err != nil {
		return err
	}
	at, err := offsetForTime(env, topic, t1)
	if err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, at, 50)
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

// offsetForTime is sarama's offsets-for-times (Client.GetOffset with a timestamp) for t1 on
// partition 0, which must be 50.
func offsetForTime(env *check.Env, topic string, t1 time.Time) (int64, error) {
	client, err := newClient(env)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	at, err := client.GetOffset(topic, 0, t1.UnixMilli())
	if err != nil {
		return 0, check.Failf("GetOffset(T1): %w", err)
	}
	if at != 50 {
		return 0, check.Failf("GetOffset(T1) returned offset %d, expected 50", at)
	}
	return at, nil
}

func consumeEnd(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 20)
	if err != nil {
		return err
	}
	// ConsumePartition resolves OffsetNewest before it returns: the consumer is positioned.
	r, err := openReader(env, topic, map[int32]int64{0: sarama.OffsetNewest})
	if err != nil {
		return err
	}
	defer r.Close()
	if hw := r.parts[0].HighWaterMarkOffset(); hw != 20 {
		return check.Failf("the consumer at the latest offset sees high watermark %d, expected 20", hw)
	}
	later := check.ToPartition(10, "later-", 0)
	if err := produce(env, topic, later, nil); err != nil {
		return err
	}
	got, err := check.ReadN(ctx, r, 10)
	if err != nil {
		return err
	}
	return check.VerifyRange(got, append(make([]check.Rec, 20), later...), 20)
}

func deleteRecords(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 100)
	if err != nil {
		return err
	}
	if err := deleteBefore30(env, topic); err != nil {
		return err
	}
	got, err := readPartition0(ctx, env, topic, sarama.OffsetOldest, 70)
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

// deleteBefore30 deletes the records of partition 0 before offset 30 (the ClusterAdmin call
// returns no low watermark) and checks that the earliest offset is then 30.
func deleteBefore30(env *check.Env, topic string) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := adm.DeleteRecords(topic, map[int32]int64{0: 30}); err != nil {
		return check.Failf("DeleteRecords: %w", err)
	}
	client, err := newClient(env)
	if err != nil {
		return err
	}
	defer client.Close()
	earliest, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return check.Failf("GetOffset(OffsetOldest): %w", err)
	}
	if earliest != 30 {
		return check.Failf("the earliest offset is %d after deleting before 30", earliest)
	}
	return nil
}

// errorOutOfRange: sarama's partition consumer never resets an offset (its
// Consumer.Offsets.Initial only applies to groups): ConsumePartition checks the offset
// against the listed earliest and latest ones, and a fetch answered OFFSET_OUT_OF_RANGE
// ends the partition consumer with that error. Either way it is ErrOffsetOutOfRange.
func errorOutOfRange(ctx context.Context, env *check.Env) error {
	topic, _, err := toPartition0(ctx, env, 10)
	if err != nil {
		return err
	}
	r, err := openReader(env, topic, map[int32]int64{0: 1000})
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		return nil
	}
	if err != nil {
		return check.Failf("expected OFFSET_OUT_OF_RANGE, got %w", err)
	}
	defer r.Close()
	got, err := check.ReadN(ctx, r, 1)
	switch {
	case errors.Is(err, sarama.ErrOffsetOutOfRange):
		return nil
	case err != nil:
		return check.Failf("expected OFFSET_OUT_OF_RANGE, got %w", err)
	}
	return check.Failf("no OFFSET_OUT_OF_RANGE at offset 1000 (read %d records)", len(got))
}
