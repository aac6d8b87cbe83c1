// The franz-go family of the compatibility matrix (compat-tests/clients/CONTRACT.md):
// github.com/twmb/franz-go's kgo (producing, consuming, groups) and kadm (admin) run the
// contract's scenarios.
//
// usage: franz-go BOOTSTRAP [SCENARIO...] — one PASS / FAIL / N/A line per scenario on stdout.
package main

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"lmq/compat-tests/clients/go/internal/check"
)

func main() {
	check.Main("franz-go", map[string]check.Scenario{
		"metadata":            metadata,
		"produce-acks-0":      produceAcks(kgo.NoAck()),
		"produce-acks-1":      produceAcks(kgo.LeaderAck()),
		"produce-acks-all":    produceAcks(kgo.AllISRAcks()),
		"compression-gzip":    compression(kgo.GzipCompression()),
		"compression-snappy":  compression(kgo.SnappyCompression()),
		"compression-lz4":     compression(kgo.Lz4Compression()),
		"compression-zstd":    compression(kgo.ZstdCompression()),
		"keys-headers-nulls":  keysHeadersNulls,
		"large-message":       largeMessage,
		"consume-beginning":   consumeBeginning,
		"consume-offset":      consumeOffset,
		"consume-timestamp":   consumeTimestamp,
		"consume-end":         consumeEnd,
		"idempotent":          idempotent,
		"group-rebalance":     groupRebalance,
		"commit-resume":       commitResume,
		"admin-topics":        adminTopics,
		"admin-configs":       adminConfigs,
		"delete-records":      deleteRecords,
		"error-unknown-topic": errorUnknownTopic,
		"error-invalid-topic": errorInvalidTopic,
		"error-too-large":     errorTooLarge,
		"error-out-of-range":  errorOutOfRange,
		"transactions":        transactions,
	})
}

// produceAcks: 200 records with the given acks to a 3-partition topic, read back; with
// acks=0 there is no acknowledgement to compare offsets against, so only values count.
func produceAcks(acks kgo.Acks) check.Scenario {
	return func(ctx context.Context, env *check.Env) error {
		topic, err := createTopic(ctx, env, 3, nil)
		if err != nil {
			return err
		}
		sent := check.Numbered(200, "")
		if err := produce(ctx, env, topic, sent, kgo.RequiredAcks(acks)); err != nil {
			return err
		}
		got, err := readAll(ctx, env, topic, len(sent))
		if err != nil {
			return err
		}
		return check.Verify(sent, got, acks != kgo.NoAck())
	}
}

// compression: 200 records with the codec set on the producer (acks=all), full round trip.
func compression(codec kgo.CompressionCodec) check.Scenario {
	return func(ctx context.Context, env *check.Env) error {
		return roundTrip(ctx, env, check.Numbered(200, ""), kgo.ProducerBatchCompression(codec))
	}
}

func keysHeadersNulls(ctx context.Context, env *check.Env) error {
	return roundTrip(ctx, env, check.KeysHeadersNulls())
}

func largeMessage(ctx context.Context, env *check.Env) error {
	sent := []check.Rec{{Key: []byte("large"), Value: check.RandomBytes(900_000), Partition: check.Any}}
	// The default batch limit (~1 MB) would fit it, but the contract raises the limit.
	return roundTrip(ctx, env, sent, kgo.ProducerBatchMaxBytes(2_000_000))
}

// roundTrip sends recs (acks=all) to a new 3-partition topic and reads them all back.
func roundTrip(ctx context.Context, env *check.Env, sent []check.Rec, opts ...kgo.Opt) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	if err := produce(ctx, env, topic, sent, opts...); err != nil {
		return err
	}
	got, err := readAll(ctx, env, topic, len(sent))
	if err != nil {
		return err
	}
	return check.Verify(sent, got, true)
}

func idempotent(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	sent := check.Numbered(300, "")
	// kgo is idempotent by default; say so explicitly, with acks=all as it requires.
	if err := produceWith(ctx, env, topic, sent, kgo.RequiredAcks(kgo.AllISRAcks())); err != nil {
		return err
	}
	got, err := readAll(ctx, env, topic, len(sent))
	if err != nil {
		return err
	}
	if err := check.CheckNoDuplicates(got); err != nil {
		return err
	}
	return check.Verify(sent, got, true)
}
