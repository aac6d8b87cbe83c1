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

func metadata(ctx context.Context, env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return check.Failf("ListBrokers: %v", err)
	}
	if len(brokers) == 0 {
		return check.Failf("metadata listed no broker")
	}
	for _, b := range brokers {
		if b.Host == "" || b.Port <= 0 {
			return check.Failf("broker %d without host/port: %q:%d", b.NodeID, b.Host, b.Port)
		}
	}
	// createTopic waits until the metadata shows 3 partitions, each with a leader.
	_, err = createTopic(ctx, env, 3, nil)
	return err
}

func adminTopics(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	if listed, err := adm.ListTopics(ctx); err != nil || !listed.Has(topic) {
		return check.Failf("ListTopics does not list the new topic %s (error %v)", topic, err)
	}
	if _, err := adm.UpdatePartitions(ctx, 5, topic); err != nil {
		return check.Failf("growing %s to 5 partitions: %v", topic, err)
	}
	if _, err := awaitLeaders(ctx, adm, topic, 5); err != nil {
		return err
	}
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		return check.Failf("deleting %s: %v", topic, err)
	}
	return check.Eventually(ctx, 10*time.Second, "the deleted topic is no longer listed", func() (bool, string, error) {
		listed, err := adm.ListTopics(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return !listed.Has(topic), "still listed", nil
	})
}

func adminConfigs(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
	if err != nil {
		return err
	}
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	if before, err := describeRetention(ctx, adm, topic); err != nil || before != "3600000" {
		return check.Failf("describe configs shows retention.ms=%s (error %v), created with 3600000", before, err)
	}
	// AlterTopicConfigs is kadm's incremental alter (IncrementalAlterConfigs).
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")}}
	resps, err := adm.AlterTopicConfigs(ctx, alter, topic)
	if err == nil {
		var resp kadm.AlterConfigsResponse
		if resp, err = resps.On(topic, nil); err == nil {
			err = resp.Err
		}
	}
	if err != nil {
		return check.Failf("incremental alter retention.ms=7200000: %v", err)
	}
	last := ""
	return check.Eventually(ctx, 10*time.Second, "describe configs shows the altered retention.ms=7200000", func() (bool, string, error) {
		value, err := describeRetention(ctx, adm, topic)
		if err != nil {
			return false, err.Error(), nil
		}
		last = value
		return value == "7200000", "it shows " + last, nil
	})
}

// describeRetention is the topic's retention.ms as describe configs shows it.
func describeRetention(ctx context.Context, adm *kadm.Client, topic string) (string, error) {
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return "", err
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		return "", err
	}
	if rc.Err != nil {
		return "", rc.Err
	}
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			return c.MaybeValue(), nil
		}
	}
	return "", fmt.Errorf("no retention.ms among %d configs", len(rc.Configs))
}

func errorUnknownTopic(ctx context.Context, env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	topic := env.Name()
	// kadm's metadata request does not ask for auto-creation.
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return check.Failf("metadata for the missing topic failed as a request: %v", err)
	}
	detail, ok := topics[topic]
	switch {
	case !ok:
		return check.Failf("metadata did not mention the missing topic %s", topic)
	case detail.Err == nil:
		return check.Failf("describing the missing topic %s succeeded with %d partitions", topic, len(detail.Partitions))
	case !errors.Is(detail.Err, kerr.UnknownTopicOrPartition):
		return check.Failf("expected UNKNOWN_TOPIC_OR_PARTITION, got %v", detail.Err)
	}
	return nil
}

func errorInvalidTopic(ctx context.Context, env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	_, err = adm.CreateTopic(ctx, 3, 1, nil, "bad/name")
	switch {
	case err == nil:
		return check.Failf("creating topic 'bad/name' succeeded")
	case !errors.Is(err, kerr.InvalidTopicException):
		return check.Failf("expected INVALID_TOPIC_EXCEPTION, got %v", err)
	}
	return nil
}

func errorTooLarge(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	rec := []check.Rec{{Value: check.RandomBytes(2_000_000), Partition: 0}}
	// The 4 MB batch limit lets the client send it, so the broker's limit must refuse it.
	err = produce(ctx, env, topic, rec, kgo.ProducerBatchMaxBytes(4<<20))
	switch {
	case err == nil:
		return check.Failf("the 2,000,000-byte record was accepted at offset %d of partition %d", rec[0].Offset, rec[0].Partition)
	case !errors.Is(err, kerr.MessageTooLarge):
		return check.Failf("expected MESSAGE_TOO_LARGE, got %v", err)
	}
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	ends, err := endOffsets(ctx, adm, topic)
	if err != nil {
		return err
	}
	for p, end := range ends {
		if end != 0 {
			return check.Failf("the topic is not empty: partition %d ends at %d", p, end)
		}
	}
	return nil
}
