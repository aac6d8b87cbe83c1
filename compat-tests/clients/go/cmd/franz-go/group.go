package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lmq/compat-tests/clients/go/internal/check"
)

// member is one group consumer and the partitions it owns, as its callbacks report them.
type member struct {
	cl    *kgo.Client
	mu    sync.Mutex
	owned map[int32]bool
	got   []check.Rec
}

// newMember joins group on topic (classic protocol, kgo's default cooperative-sticky
// balancer) with offsets committed only explicitly. Rebalances are held while a poll's
// records are processed, so the ownership check sees the assignment they came under.
func newMember(env *check.Env, group, topic string) (*member, error) {
	m := &member{owned: map[int32]bool{}}
	cl, err := newClient(env,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, added map[string][]int32) { m.change(added[topic], true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { m.change(lost[topic], false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { m.change(lost[topic], false) }),
	)
	if err != nil {
		return nil, err
	}
	m.cl = cl
	return m, nil
}

func (m *member) change(partitions []int32, owned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range partitions {
		if owned {
			m.owned[p] = true
		} else {
			delete(m.owned, p)
		}
	}
}

// assignment is the sorted list of partitions the member owns now.
func (m *member) assignment() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.owned))
}

// poll takes one poll's records; with checkOwner each must be of a partition it owns.
func (m *member) poll(ctx context.Context, checkOwner bool) error {
	defer m.cl.AllowRebalance()
	recs, err := poller{m.cl}.Poll(ctx, 100*time.Millisecond)
	if err != nil {
		return err
	}
	owned := m.assignment()
	for _, r := range recs {
		if checkOwner && !slices.Contains(owned, r.Partition) {
			return check.Failf("a consumer got a record of partition %d it does not own (it owns %v)", r.Partition, owned)
		}
	}
	m.got = append(m.got, recs...)
	return nil
}

// pollAll polls the members in turn until done holds or `within` passed.
func pollAll(ctx context.Context, members []*member, within time.Duration, checkOwner bool, done func() bool) error {
	deadline := time.Now().Add(within)
	for !done() && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, m := range members {
			if err := m.poll(ctx, checkOwner); err != nil {
				return err
			}
		}
	}
	return nil
}

func consumed(members ...*member) []check.Rec {
	var all []check.Rec
	for _, m := range members {
		all = append(all, m.got...)
	}
	return all
}

// sharedFairly: both members hold partitions, disjoint, all `total` covered.
func sharedFairly(a, b *member, total int) bool {
	sa, sb := a.assignment(), b.assignment()
	union := map[int32]bool{}
	for _, p := range append(slices.Clone(sa), sb...) {
		union[p] = true
	}
	return len(sa) > 0 && len(sb) > 0 && len(union) == total && len(sa)+len(sb) == total
}

func groupRebalance(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 4, nil)
	if err != nil {
		return err
	}
	group := env.Name()
	a, err := newMember(env, group, topic)
	if err != nil {
		return err
	}
	aClosed := false
	defer func() {
		if !aClosed {
			a.cl.Close()
		}
	}()
	b, err := newMember(env, group, topic)
	if err != nil {
		return err
	}
	defer b.cl.Close()

	if err := shareThenConsume(ctx, env, topic, a, b); err != nil {
		return err
	}
	// One member leaves (Close leaves the group): the other takes all 4 and reads the next 100.
	a.cl.Close()
	aClosed = true
	b.got = nil
	if err := pollAll(ctx, []*member{b}, 30*time.Second, false, func() bool { return len(b.assignment()) == 4 }); err != nil {
		return err
	}
	if owned := b.assignment(); len(owned) != 4 {
		return check.Failf("30 s after the other member left, the remaining one holds %v, expected all 4", owned)
	}
	second := check.Numbered(100, "b")
	if err := produce(ctx, env, topic, second); err != nil {
		return err
	}
	if err := pollAll(ctx, []*member{b}, 30*time.Second, true, func() bool { return len(b.got) >= 100 }); err != nil {
		return err
	}
	if err := pollAll(ctx, []*member{b}, 300*time.Millisecond, true, func() bool { return false }); err != nil {
		return err
	}
	return check.CheckOnce(second, b.got, "next 100")
}

// shareThenConsume waits until a and b split the 4 partitions, then checks that 200 records
// are consumed once in total, each by its partition's owner, and commits both members.
func shareThenConsume(ctx context.Context, env *check.Env, topic string, a, b *member) error {
	both := []*member{a, b}
	if err := pollAll(ctx, both, 45*time.Second, false, func() bool { return sharedFairly(a, b, 4) }); err != nil {
		return err
	}
	if !sharedFairly(a, b, 4) {
		return check.Failf("after 45 s the members hold %v and %v; expected both non-empty, disjoint, all 4 partitions", a.assignment(), b.assignment())
	}
	if n := len(consumed(a, b)); n > 0 {
		return check.Failf("%d records came before any was produced", n)
	}
	ownedA, ownedB := a.assignment(), b.assignment()
	first := check.Numbered(200, "a")
	if err := produce(ctx, env, topic, first); err != nil {
		return err
	}
	if err := pollAll(ctx, both, 30*time.Second, true, func() bool { return len(consumed(a, b)) >= 200 }); err != nil {
		return err
	}
	if err := pollAll(ctx, both, 300*time.Millisecond, true, func() bool { return false }); err != nil {
		return err
	}
	if !slices.Equal(a.assignment(), ownedA) || !slices.Equal(b.assignment(), ownedB) {
		return check.Failf("the assignment changed while consuming: %v and %v became %v and %v", ownedA, ownedB, a.assignment(), b.assignment())
	}
	if err := check.CheckOnce(first, consumed(a, b), "first 200"); err != nil {
		return err
	}
	for _, m := range both {
		if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
			return check.Failf("committing the consumed offsets: %v", err)
		}
	}
	return nil
}

func commitResume(ctx context.Context, env *check.Env) error {
	topic, err := createTopic(ctx, env, 1, nil)
	if err != nil {
		return err
	}
	group := env.Name()
	sent := check.ToPartition(150, "", 0)
	if err := produce(ctx, env, topic, sent); err != nil {
		return err
	}
	if err := check.CheckAcked(sent, 0); err != nil {
		return err
	}
	if err := consumeFirst100(ctx, env, group, topic, sent); err != nil {
		return err
	}
	if err := checkCommitted(ctx, env, group, topic, 100); err != nil {
		return err
	}
	second, err := newMember(env, group, topic)
	if err != nil {
		return err
	}
	defer second.cl.Close()
	if err := pollAll(ctx, []*member{second}, check.ReadDeadline, false, func() bool { return len(second.got) >= 50 }); err != nil {
		return err
	}
	if err := pollAll(ctx, []*member{second}, 300*time.Millisecond, false, func() bool { return false }); err != nil {
		return err
	}
	return check.VerifyRange(second.got, sent, 100)
}

// consumeFirst100 has a group member take the first 100 records, commit offset 100
// synchronously and leave.
func consumeFirst100(ctx context.Context, env *check.Env, group, topic string, sent []check.Rec) error {
	first, err := newMember(env, group, topic)
	if err != nil {
		return err
	}
	defer first.cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(check.ReadDeadline)
	for len(recs) < 100 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := first.cl.PollRecords(pctx, 100-len(recs))
		cancel()
		first.cl.AllowRebalance()
		if err := fetchError(fetches); err != nil {
			return err
		}
		recs = append(recs, fetches.Records()...)
	}
	if len(recs) < 100 {
		return check.Failf("the first member read %d records in %s, expected 100", len(recs), check.ReadDeadline)
	}
	got := make([]check.Rec, len(recs))
	for i, r := range recs {
		got[i] = fromKgo(r)
	}
	if err := check.VerifyRange(got, sent[:100], 0); err != nil {
		return err
	}
	return commitSync(ctx, first.cl, topic, kgo.EpochOffset{Epoch: recs[99].LeaderEpoch, Offset: 100})
}

// commitSync commits one offset of partition 0 and waits for the broker's answer.
func commitSync(ctx context.Context, cl *kgo.Client, topic string, at kgo.EpochOffset) error {
	var failed error
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: {0: at}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				failed = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 && failed == nil {
						failed = fmt.Errorf("partition %d: %w", p.Partition, kerr.ErrorForCode(p.ErrorCode))
					}
				}
			}
		})
	if failed != nil {
		return check.Failf("committing offset 100: %v", failed)
	}
	return nil
}

// checkCommitted checks with kadm that group's committed offset of partition 0 is want.
func checkCommitted(ctx context.Context, env *check.Env, group, topic string, want int64) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return check.Failf("fetching the group's committed offsets: %v", err)
	}
	o, ok := offsets.Lookup(topic, 0)
	if !ok || o.Err != nil || o.At != want {
		return check.Failf("the group's committed offset is %d (found %v, error %v), expected %d", o.At, ok, o.Err, want)
	}
	return nil
}
