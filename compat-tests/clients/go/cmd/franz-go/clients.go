package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lmq/compat-tests/clients/go/internal/check"
)

// newClient is a kgo client for the scenario with bounded timeouts; opts add its role
// (producer settings, the partitions or group to consume).
func newClient(env *check.Env, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(env.Bootstrap, ",")...),
		kgo.ClientID(env.ClientID()),
		kgo.DialTimeout(10 * time.Second),
		kgo.RetryTimeout(30 * time.Second),
		kgo.RecordDeliveryTimeout(45 * time.Second),
	}
	if os.Getenv("COMPAT_DEBUG") != "" {
		base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kgo.NewClient: %w", err)
	}
	return cl, nil
}

// newAdmin is a kadm client over its own kgo client; close it with adm.Close().
func newAdmin(env *check.Env) (*kadm.Client, error) {
	cl, err := newClient(env)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(15000)
	return adm, nil
}

// createTopic creates a fresh topic with kadm and waits until every partition has a leader.
func createTopic(ctx context.Context, env *check.Env, partitions int32, configs map[string]*string) (string, error) {
	adm, err := newAdmin(env)
	if err != nil {
		return "", err
	}
	defer adm.Close()
	name := env.Name()
	if _, err := adm.CreateTopic(ctx, partitions, 1, configs, name); err != nil {
		return "", check.Failf("creating topic %s failed: %v", name, err)
	}
	if _, err := awaitLeaders(ctx, adm, name, int(partitions)); err != nil {
		return "", err
	}
	return name, awaitServing(ctx, adm, name)
}

// awaitServing waits (10 s at most) until every partition's leader answers ListOffsets.
// Metadata can name a leader a moment before that broker leads the partition, and a record
// sent with acks=0 in that moment is dropped without a word.
func awaitServing(ctx context.Context, adm *kadm.Client, topic string) error {
	return check.Eventually(ctx, 10*time.Second, "every partition of "+topic+" answers ListOffsets", func() (bool, string, error) {
		listed, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

// awaitLeaders waits (10 s at most) until metadata shows the topic with `partitions`
// partitions, each with a leader.
func awaitLeaders(ctx context.Context, adm *kadm.Client, topic string, partitions int) (kadm.TopicDetail, error) {
	var detail kadm.TopicDetail
	err := check.Eventually(ctx, 10*time.Second, fmt.Sprintf("topic %s with %d partitions, each with a leader", topic, partitions), func() (bool, string, error) {
		topics, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return false, err.Error(), nil
		}
		detail = topics[topic]
		if detail.Err != nil {
			return false, detail.Err.Error(), nil
		}
		led := 0
		for _, p := range detail.Partitions {
			if p.Leader >= 0 && p.Err == nil {
				led++
			}
		}
		return len(detail.Partitions) == partitions && led == partitions, fmt.Sprintf("%d partitions, %d with a leader", len(detail.Partitions), led), nil
	})
	return detail, err
}

// toKgo converts a record to send; a zero Timestamp lets the client stamp it.
func toKgo(topic string, r check.Rec) *kgo.Record {
	kr := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	if r.Partition != check.Any {
		kr.Partition = r.Partition
	}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return kr
}

func fromKgo(kr *kgo.Record) check.Rec {
	r := check.Rec{Key: kr.Key, Value: kr.Value, Partition: kr.Partition, Offset: kr.Offset, Timestamp: kr.Timestamp}
	for _, h := range kr.Headers {
		r.Headers = append(r.Headers, check.Header{Key: h.Key, Value: h.Value})
	}
	return r
}

// produce sends recs with a plain (non-idempotent, acks=all unless opts say otherwise)
// producer; see produceWith.
func produce(ctx context.Context, env *check.Env, topic string, recs []check.Rec, opts ...kgo.Opt) error {
	base := []kgo.Opt{kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.AllISRAcks())}
	return produceWith(ctx, env, topic, recs, append(base, opts...)...)
}

// produceWith sends recs in order with a new producer client made of opts, waits for every
// acknowledgement and records in recs where each one landed. Records that ask for a
// partition go through the manual partitioner, the others through the default one.
func produceWith(ctx context.Context, env *check.Env, topic string, recs []check.Rec, opts ...kgo.Opt) error {
	opts = append(opts, kgo.ProducerLinger(5*time.Millisecond))
	if len(recs) > 0 && recs[0].Partition != check.Any {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := newClient(env, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = toKgo(topic, r)
	}
	// ProduceSync lists the results in completion order, not send order: find each record's
	// error by its pointer; the client sets Partition and Offset in the records themselves.
	failed := map[*kgo.Record]error{}
	for _, res := range cl.ProduceSync(ctx, krs...) {
		if res.Err != nil {
			failed[res.Record] = res.Err
		}
	}
	for i, kr := range krs {
		if err := failed[kr]; err != nil {
			return check.Failf("record %d of %d was not acknowledged: %w", i, len(recs), err)
		}
		recs[i].Partition, recs[i].Offset = kr.Partition, kr.Offset
	}
	return nil
}

// poller adapts a consuming kgo client to check.Poller.
type poller struct{ cl *kgo.Client }

// Poll returns the records of one PollFetches bounded by wait, and the first fetch error
// that is not the poll's own timeout.
func (p poller) Poll(ctx context.Context, wait time.Duration) ([]check.Rec, error) {
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	fetches := p.cl.PollFetches(pctx)
	var recs []check.Rec
	fetches.EachRecord(func(kr *kgo.Record) { recs = append(recs, fromKgo(kr)) })
	return recs, fetchError(fetches)
}

// fetchError is the first error of a poll, ignoring the poll's context ending.
func fetchError(fetches kgo.Fetches) error {
	var first error
	fetches.EachError(func(topic string, partition int32, err error) {
		if first == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			first = fmt.Errorf("fetch %s[%d]: %w", topic, partition, err)
		}
	})
	return first
}

// partitionConsumer consumes the given partitions of topic (no group) from the given offsets.
func partitionConsumer(env *check.Env, topic string, offsets map[int32]kgo.Offset, opts ...kgo.Opt) (*kgo.Client, error) {
	opts = append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})}, opts...)
	return newClient(env, opts...)
}

// readAll reads every partition of topic from its beginning until it holds `expected`
// records and every partition was read to its end offset.
func readAll(ctx context.Context, env *check.Env, topic string, expected int) ([]check.Rec, error) {
	cl, err := newClient(env, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	return check.ReadAll(ctx, poller{cl}, expected, func(ctx context.Context) (map[int32]int64, error) {
		return endOffsets(ctx, adm, topic)
	})
}

// endOffsets lists the end (high watermark) offset of every partition of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, check.Failf("listing end offsets of %s: %v", topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}

// fetchWatch is a hook that tells when the client wrote its first Fetch request, that is
// when a consumer has resolved its start offset and is positioned.
type fetchWatch struct {
	once    sync.Once
	fetched chan struct{}
}

func newFetchWatch() *fetchWatch { return &fetchWatch{fetched: make(chan struct{})} }

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (w *fetchWatch) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		w.once.Do(func() { close(w.fetched) })
	}
}
