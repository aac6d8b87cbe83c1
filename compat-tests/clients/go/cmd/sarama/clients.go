package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"lmq/compat-tests/clients/go/internal/check"
)

func init() {
	// Sarama logs every connection and rebalance; keep it for debugging only (stderr).
	if os.Getenv("COMPAT_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags|log.Lmicroseconds)
	}
}

func brokers(env *check.Env) []string { return strings.Split(env.Bootstrap, ",") }

// config is the scenario's sarama configuration: Kafka 4.0's protocol (sarama still
// lowers each request to what the broker's ApiVersions allows), bounded timeouts, a
// non-idempotent acks=all producer that reports successes (as a SyncProducer requires),
// consumers that report their errors and commit only explicitly.
func config(env *check.Env) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V4_0_0_0
	c.ClientID = env.ClientID()
	c.Net.DialTimeout = 10 * time.Second
	c.Admin.Timeout = 15 * time.Second
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Timeout = 15 * time.Second
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	return c
}

// newAdmin is a ClusterAdmin for the scenario; close it when done.
func newAdmin(env *check.Env) (sarama.ClusterAdmin, error) {
	adm, err := sarama.NewClusterAdmin(brokers(env), config(env))
	if err != nil {
		return nil, check.Failf("NewClusterAdmin: %w", err)
	}
	return adm, nil
}

// newClient is a plain sarama client (metadata, offsets) for the scenario.
func newClient(env *check.Env) (sarama.Client, error) {
	cl, err := sarama.NewClient(brokers(env), config(env))
	if err != nil {
		return nil, check.Failf("NewClient: %w", err)
	}
	return cl, nil
}

// createTopic creates a fresh topic with the ClusterAdmin and waits until every partition
// has a leader.
func createTopic(ctx context.Context, env *check.Env, partitions int32, configs map[string]*string) (string, error) {
	adm, err := newAdmin(env)
	if err != nil {
		return "", err
	}
	defer adm.Close()
	name := env.Name()
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}
	if err := adm.CreateTopic(name, detail, false); err != nil {
		return "", check.Failf("creating topic %s failed: %w", name, err)
	}
	if _, err := awaitLeaders(ctx, adm, name, int(partitions)); err != nil {
		return "", err
	}
	return name, awaitServing(ctx, env, name, partitions)
}

// awaitServing waits (10 s at most) until every partition's leader answers ListOffsets.
// Metadata can name a leader a moment before that broker leads the partition, and a record
// sent with acks=0 in that moment is dropped without a word.
func awaitServing(ctx context.Context, env *check.Env, topic string, partitions int32) error {
	client, err := newClient(env)
	if err != nil {
		return err
	}
	defer client.Close()
	return check.Eventually(ctx, 10*time.Second, "every partition of "+topic+" answers ListOffsets", func() (bool, string, error) {
		for p := range partitions {
			if _, err := client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
				return false, fmt.Sprintf("partition %d: %v", p, err), nil
			}
		}
		return true, "", nil
	})
}

// awaitLeaders waits (10 s at most) until the admin describe shows the topic with
// `partitions` partitions, each with a leader.
func awaitLeaders(ctx context.Context, adm sarama.ClusterAdmin, topic string, partitions int) (*sarama.TopicMetadata, error) {
	var md *sarama.TopicMetadata
	err := check.Eventually(ctx, 10*time.Second, fmt.Sprintf("topic %s with %d partitions, each with a leader", topic, partitions), func() (bool, string, error) {
		described, err := adm.DescribeTopics([]string{topic})
		if err != nil {
			return false, err.Error(), nil
		}
		if len(described) != 1 {
			return false, fmt.Sprintf("%d topics described", len(described)), nil
		}
		md = described[0]
		if !errors.Is(md.Err, sarama.ErrNoError) {
			return false, md.Err.Error(), nil
		}
		led := 0
		for _, p := range md.Partitions {
			if p.Leader >= 0 && errors.Is(p.Err, sarama.ErrNoError) {
				led++
			}
		}
		return len(md.Partitions) == partitions && led == partitions, fmt.Sprintf("%d partitions, %d with a leader", len(md.Partitions), led), nil
	})
	return md, err
}

// toMessage converts a record to send: a nil key or value stays null (no encoder).
func toMessage(topic string, r check.Rec) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic, Timestamp: r.Timestamp}
	if r.Key != nil {
		m.Key = sarama.ByteEncoder(r.Key)
	}
	if r.Value != nil {
		m.Value = sarama.ByteEncoder(r.Value)
	}
	if r.Partition != check.Any {
		m.Partition = r.Partition
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	return m
}

func fromMessage(m *sarama.ConsumerMessage) check.Rec {
	r := check.Rec{Key: m.Key, Value: m.Value, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, check.Header{Key: string(h.Key), Value: h.Value})
	}
	return r
}

// produce sends recs in order with a new SyncProducer (config as tweaked), waits for every
// acknowledgement and records in recs where each landed. Records that ask for a partition
// go through the manual partitioner, the others through sarama's default (hash) one.
func produce(env *check.Env, topic string, recs []check.Rec, tweak func(*sarama.Config)) error {
	c := config(env)
	if len(recs) > 0 && recs[0].Partition != check.Any {
		c.Producer.Partitioner = sarama.NewManualPartitioner
	}
	if tweak != nil {
		tweak(c)
	}
	producer, err := sarama.NewSyncProducer(brokers(env), c)
	if err != nil {
		return check.Failf("NewSyncProducer: %w", err)
	}
	defer producer.Close()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = toMessage(topic, r)
	}
	if err := producer.SendMessages(msgs); err != nil {
		return sendFailure(msgs, err)
	}
	for i, m := range msgs {
		recs[i].Partition, recs[i].Offset = m.Partition, m.Offset
	}
	return nil
}

// sendFailure names the first message that SendMessages reported as failed.
func sendFailure(msgs []*sarama.ProducerMessage, err error) error {
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) || len(perrs) == 0 {
		return check.Failf("SendMessages: %w", err)
	}
	index := -1
	for i, m := range msgs {
		if m == perrs[0].Msg {
			index = i
		}
	}
	return check.Failf("record %d of %d was not acknowledged (%d failed): %w", index, len(msgs), len(perrs), perrs[0].Err)
}

// reader consumes partitions of a topic with sarama's Consumer, one PartitionConsumer
// each, their messages merged into one channel (per-partition order is kept).
type reader struct {
	client   sarama.Client
	consumer sarama.Consumer
	parts    []sarama.PartitionConsumer
	messages chan *sarama.ConsumerMessage
	errs     chan error
	stop     chan struct{}
}

// openReader starts consuming topic's partitions at the given offsets (or OffsetOldest /
// OffsetNewest); ConsumePartition resolves them before it returns.
func openReader(env *check.Env, topic string, starts map[int32]int64) (*reader, error) {
	return openReaderWith(env, config(env), topic, starts)
}

// openReaderWith is openReader with a configuration of the caller's (an isolation level).
func openReaderWith(env *check.Env, c *sarama.Config, topic string, starts map[int32]int64) (*reader, error) {
	client, err := sarama.NewClient(brokers(env), c)
	if err != nil {
		return nil, check.Failf("NewClient: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, check.Failf("NewConsumer: %w", err)
	}
	r := &reader{client: client, consumer: consumer, messages: make(chan *sarama.ConsumerMessage, 256), errs: make(chan error, 16), stop: make(chan struct{})}
	for p, at := range starts {
		pc, err := consumer.ConsumePartition(topic, p, at)
		if err != nil {
			r.Close()
			return nil, check.Failf("ConsumePartition(%s, %d, %d): %w", topic, p, at, err)
		}
		r.parts = append(r.parts, pc)
		go forward(pc.Messages(), r.messages, r.stop)
		go forwardErrors(pc.Errors(), r.errs, r.stop)
	}
	return r, nil
}

// forward copies messages until the source closes; after stop it only drains the source.
func forward[T any](from <-chan T, to chan<- T, stop <-chan struct{}) {
	for m := range from {
		select {
		case to <- m:
		case <-stop:
		}
	}
}

func forwardErrors(from <-chan *sarama.ConsumerError, to chan<- error, stop <-chan struct{}) {
	for e := range from {
		select {
		case to <- e:
		case <-stop:
		}
	}
}

// Poll waits up to wait for a first message, then takes whatever else is already there.
func (r *reader) Poll(ctx context.Context, wait time.Duration) ([]check.Rec, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var recs []check.Rec
	select {
	case m := <-r.messages:
		recs = append(recs, fromMessage(m))
	case err := <-r.errs:
		return nil, err
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, nil
	}
	for {
		select {
		case m := <-r.messages:
			recs = append(recs, fromMessage(m))
		default:
			return recs, nil
		}
	}
}

// Close stops every partition consumer, the consumer and its client.
func (r *reader) Close() {
	close(r.stop)
	for _, pc := range r.parts {
		pc.AsyncClose()
	}
	r.consumer.Close()
	r.client.Close()
}

// endOffsets lists the end (newest) offset of each partition.
func endOffsets(client sarama.Client, topic string, partitions []int32) (map[int32]int64, error) {
	ends := map[int32]int64{}
	for _, p := range partitions {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, check.Failf("listing the end offset of %s[%d]: %w", topic, p, err)
		}
		ends[p] = end
	}
	return ends, nil
}

// readAll reads every partition of topic from its beginning until it holds `expected`
// records and every partition was read to its end offset.
func readAll(ctx context.Context, env *check.Env, topic string, expected int) ([]check.Rec, error) {
	client, err := newClient(env)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return nil, check.Failf("partitions of %s: %w", topic, err)
	}
	starts := map[int32]int64{}
	for _, p := range partitions {
		starts[p] = sarama.OffsetOldest
	}
	r, err := openReader(env, topic, starts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return check.ReadAll(ctx, r, expected, func(context.Context) (map[int32]int64, error) {
		return endOffsets(client, topic, partitions)
	})
}
