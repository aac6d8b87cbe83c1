package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"lmq/compat-tests/clients/go/internal/check"
)

func metadata(ctx context.Context, env *check.Env) error {
	if err := describeCluster(env); err != nil {
		return err
	}
	// createTopic waits until the admin describe shows 3 partitions, each with a leader.
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	// The same through the plain client's metadata.
	client, err := newClient(env)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.RefreshMetadata(topic); err != nil {
		return check.Failf("RefreshMetadata(%s): %w", topic, err)
	}
	partitions, err := client.Partitions(topic)
	if err != nil || len(partitions) != 3 {
		return check.Failf("the client's metadata shows partitions %v of %s (error %v), expected 3", partitions, topic, err)
	}
	for _, p := range partitions {
		if _, err := client.Leader(topic, p); err != nil {
			return check.Failf("partition %d has no leader in the client's metadata: %w", p, err)
		}
	}
	return nil
}

// describeCluster checks that the admin's describe-cluster lists brokers with host and port.
func describeCluster(env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	brokers, _, err := adm.DescribeCluster()
	if err != nil {
		return check.Failf("DescribeCluster: %w", err)
	}
	if len(brokers) == 0 {
		return check.Failf("DescribeCluster listed no broker")
	}
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b.Addr())
		if n, _ := strconv.Atoi(port); err != nil || host == "" || n <= 0 {
			return check.Failf("broker %d without host/port: %q", b.ID(), b.Addr())
		}
	}
	return nil
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
	if listed, err := adm.ListTopics(); err != nil || !hasTopic(listed, topic) {
		return check.Failf("ListTopics does not list the new topic %s (error %v)", topic, err)
	}
	if err := adm.CreatePartitions(topic, 5, nil, false); err != nil {
		return check.Failf("growing %s to 5 partitions: %w", topic, err)
	}
	if _, err := awaitLeaders(ctx, adm, topic, 5); err != nil {
		return err
	}
	if err := adm.DeleteTopic(topic); err != nil {
		return check.Failf("deleting %s: %w", topic, err)
	}
	return check.Eventually(ctx, 10*time.Second, "the deleted topic is no longer listed", func() (bool, string, error) {
		listed, err := adm.ListTopics()
		if err != nil {
			return false, err.Error(), nil
		}
		return !hasTopic(listed, topic), "still listed", nil
	})
}

func hasTopic(listed map[string]sarama.TopicDetail, topic string) bool {
	_, ok := listed[topic]
	return ok
}

func adminConfigs(ctx context.Context, env *check.Env) error {
	hour := "3600000"
	topic, err := createTopic(ctx, env, 3, map[string]*string{"retention.ms": &hour})
	if err != nil {
		return err
	}
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	if before, err := describeRetention(adm, topic); err != nil || before != "3600000" {
		return check.Failf("DescribeConfig shows retention.ms=%s (error %v), created with 3600000", before, err)
	}
	twoHours := "7200000"
	set := map[string]sarama.IncrementalAlterConfigsEntry{"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &twoHours}}
	if err := adm.IncrementalAlterConfig(sarama.TopicResource, topic, set, false); err != nil {
		return check.Failf("IncrementalAlterConfig retention.ms=7200000: %w", err)
	}
	return check.Eventually(ctx, 10*time.Second, "DescribeConfig shows the altered retention.ms=7200000", func() (bool, string, error) {
		value, err := describeRetention(adm, topic)
		if err != nil {
			return false, err.Error(), nil
		}
		return value == "7200000", "it shows " + value, nil
	})
}

// describeRetention is the topic's retention.ms as DescribeConfig shows it.
func describeRetention(adm sarama.ClusterAdmin, topic string) (string, error) {
	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms"}})
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name == "retention.ms" {
			return e.Value, nil
		}
	}
	return "", fmt.Errorf("no retention.ms among %d configs", len(entries))
}

func errorUnknownTopic(_ context.Context, env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	topic := env.Name()
	// The admin's metadata request does not ask for auto-creation.
	described, err := adm.DescribeTopics([]string{topic})
	if err != nil {
		return check.Failf("describing the missing topic failed as a request: %w", err)
	}
	if len(described) != 1 {
		return check.Failf("describing the missing topic %s returned %d topics", topic, len(described))
	}
	switch md := described[0]; {
	case errors.Is(md.Err, sarama.ErrNoError):
		return check.Failf("describing the missing topic %s succeeded with %d partitions", topic, len(md.Partitions))
	case !errors.Is(md.Err, sarama.ErrUnknownTopicOrPartition):
		return check.Failf("expected UNKNOWN_TOPIC_OR_PARTITION, got %w", md.Err)
	}
	return nil
}

func errorInvalidTopic(_ context.Context, env *check.Env) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	err = adm.CreateTopic("bad/name", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
	switch {
	case err == nil:
		return check.Failf("creating topic 'bad/name' succeeded")
	case !errors.Is(err, sarama.ErrInvalidTopic):
		return check.Failf("expected INVALID_TOPIC_EXCEPTION, got %w", err)
	}
	return nil
}

func errorTooLarge(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 3, nil)
	if err != nil {
		return err
	}
	rec := []check.Rec{{Value: check.RandomBytes(2_000_000), Partition: 0}}
	// A 4 MB limit lets the producer send it, so the broker's limit must refuse it.
	err = produce(env, topic, rec, func(c *sarama.Config) { c.Producer.MaxMessageBytes = 4 << 20 })
	switch {
	case err == nil:
		return check.Failf("the 2,000,000-byte record was accepted at offset %d of partition %d", rec[0].Offset, rec[0].Partition)
	case !errors.Is(err, sarama.ErrMessageSizeTooLarge):
		return check.Failf("expected MESSAGE_TOO_LARGE, got %w", err)
	}
	client, err := newClient(env)
	if err != nil {
		return err
	}
	defer client.Close()
	ends, err := endOffsets(client, topic, []int32{0, 1, 2})
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
