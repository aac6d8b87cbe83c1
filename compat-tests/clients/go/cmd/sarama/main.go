// The sarama family of the compatibility matrix (compat-tests/clients/CONTRACT.md):
// github.com/IBM/sarama's SyncProducer, Consumer, ConsumerGroup and ClusterAdmin run the
// contract's scenarios.
//
// usage: sarama BOOTSTRAP [SCENARIO...] — one PASS / FAIL / N/A line per scenario on stdout.
package main

import (
	"context"

	"github.com/IBM/sarama"

	"lmq/compat-tests/clients/go/internal/check"
)

func main() {
	check.Main("sarama", map[string]check.Scenario{
		"metadata":            metadata,
		"produce-acks-0":      produceAcks(sarama.NoResponse),
		"produce-acks-1":      produceAcks(sarama.WaitForLocal),
		"produce-acks-all":    produceAcks(sarama.WaitForAll),
		"compression-gzip":    compression(sarama.CompressionGZIP),
		"compression-snappy":  compression(sarama.CompressionSnappy),
		"compression-lz4":     compression(sarama.CompressionLZ4),
		"compression-zstd":    compression(sarama.CompressionZSTD),
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
// acks=0 (NoResponse) there is no acknowledged offset, so only values count.
func produceAcks(acks sarama.RequiredAcks) check.Scenario {
	return func(ctx context.Context, env *check.Env) error {
		return roundTrip(ctx, env, check.Numbered(200, ""), acks != sarama.NoResponse, func(c *sarama.Config) {
			c.Producer.RequiredAcks = acks
		})
	}
}

// compression: 200 records with the codec set on the producer (acks=all), full round trip.
func compression(codec sarama.CompressionCodec) check.Scenario {
	return func(ctx context.Context, env *check.Env) error {
		return roundTrip(ctx, env, check.Numbered(200, ""), true, func(c *sarama.Config) {
			c.Producer.Compression = codec
		})
	}
}

func keysHeadersNulls(ctx context.Context, env *check.Env) error {
	return roundTrip(ctx, env, check.KeysHeadersNulls(), true, nil)
}

func largeMessage(ctx context.Context, env *check.Env) error {
	sent := []check.Rec{{Key: []byte("large"), Value: check.RandomBytes(900_000), Partition: check.Any}}
	// Sarama's producer refuses messages over 1,000,000 bytes by default.
	return roundTrip(ctx, env, sent, true, func(c *sarama.Config) {
		c.Producer.MaxMessageBytes = 2_000_000
	})
}

func idempotent(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	sent := check.Numbered(300, "")
	err = produce(env, topic, sent, func(c *sarama.Config) {
		// Sarama's idempotent producer requires acks=all and one request in flight.
		c.Producer.Idempotent = true
		c.Producer.RequiredAcks = sarama.WaitForAll
		c.Net.MaxOpenRequests = 1
	})
	if err != nil {
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

// roundTrip sends recs with the tweaked producer to a new 3-partition topic and reads them
// all back.
func roundTrip(ctx context.Context, env *check.Env, sent []check.Rec, offsets bool, tweak func(*sarama.Config)) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	if err := produce(env, topic, sent, tweak); err != nil {
		return err
	}
	got, err := readAll(ctx, env, topic, len(sent))
	if err != nil {
		return err
	}
	return check.Verify(sent, got, offsets)
}
