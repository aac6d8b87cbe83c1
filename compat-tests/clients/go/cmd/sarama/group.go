package main

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"lmq/compat-tests/clients/go/internal/check"
)

// member is one ConsumerGroup member: its handler records the claims of the current
// session and every message it is given, checking that the message's partition is claimed.
type member struct {
	group sarama.ConsumerGroup
	topic string
	mark  bool // mark each message consumed (committed by commit())
	done  chan struct{}

	mu     sync.Mutex
	owned  map[int32]bool
	sess   sarama.ConsumerGroupSession
	got    []check.Rec
	strays []string // messages of partitions the member did not own
	errs   []error
}

// join starts a member of group on topic (classic protocol, sarama's default range
// balancer); it consumes until leave.
func join(ctx context.Context, env *check.Env, group, topic string, mark bool) (*member, error) {
	g, err := sarama.NewConsumerGroup(brokers(env), group, config(env))
	if err != nil {
		return nil, check.Failf("NewConsumerGroup: %w", err)
	}
	m := &member{group: g, topic: topic, mark: mark, done: make(chan struct{})}
	go m.collectErrors()
	go m.consume(ctx)
	return m, nil
}

// consume runs one group session after the other (each rebalance ends one) until the group
// is closed or ctx ends.
func (m *member) consume(ctx context.Context) {
	defer close(m.done)
	for ctx.Err() == nil {
		err := m.group.Consume(ctx, []string{m.topic}, m)
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if err != nil {
			m.addError(err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (m *member) collectErrors() {
	for err := range m.group.Errors() {
		m.addError(err)
	}
}

func (m *member) addError(err error) {
	check.Logf("sarama group member: %v", err)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, err)
}

// Setup implements sarama.ConsumerGroupHandler: the session's claims are what it owns.
func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owned = map[int32]bool{}
	for _, p := range s.Claims()[m.topic] {
		m.owned[p] = true
	}
	m.sess = s
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler: between sessions it owns nothing.
func (m *member) Cleanup(sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owned, m.sess = nil, nil
	return nil
}

// ConsumeClaim implements sarama.ConsumerGroupHandler.
func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			m.take(s, msg)
		case <-s.Context().Done():
			return nil
		}
	}
}

func (m *member) take(s sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.owned[msg.Partition] {
		m.strays = append(m.strays, check.Show(msg.Value))
	}
	m.got = append(m.got, fromMessage(msg))
	if m.mark {
		s.MarkMessage(msg, "")
	}
}

// assignment is the sorted list of partitions the member owns now.
func (m *member) assignment() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.owned))
}

// records is a copy of what the member consumed so far.
func (m *member) records() []check.Rec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.got)
}

func (m *member) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = nil
}

// trouble reports a message of a partition it did not own, or a client error.
func (m *member) trouble() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.strays) > 0 {
		return check.Failf("a member got %s of a partition it does not own", m.strays[0])
	}
	if len(m.errs) > 0 {
		return check.Failf("group member error: %w", m.errs[0])
	}
	return nil
}

// commit commits, synchronously, the offsets marked in the current session.
func (m *member) commit(mark func(sarama.ConsumerGroupSession)) error {
	m.mu.Lock()
	s := m.sess
	m.mu.Unlock()
	if s == nil {
		return check.Failf("no group session to commit in (the member owns %v)", m.assignment())
	}
	if mark != nil {
		mark(s)
	}
	s.Commit() // blocking; its errors come through group.Errors()
	return m.trouble()
}

// leave closes the member (it leaves the group) and waits for its sessions to end.
func (m *member) leave() {
	m.group.Close()
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		check.Logf("a group member did not stop within 15 s of Close")
	}
}

// await waits until cond holds or `within` passed, failing early on the members' trouble.
func await(ctx context.Context, within time.Duration, members []*member, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, m := range members {
			if err := m.trouble(); err != nil {
				return err
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range members {
		if err := m.trouble(); err != nil {
			return err
		}
	}
	return nil
}

func consumed(members ...*member) []check.Rec {
	var all []check.Rec
	for _, m := range members {
		all = append(all, m.records()...)
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
	a, err := join(ctx, env, group, topic, true)
	if err != nil {
		return err
	}
	aLeft := false
	defer func() {
		if !aLeft {
			a.leave()
		}
	}()
	b, err := join(ctx, env, group, topic, true)
	if err != nil {
		return err
	}
	defer b.leave()

	if err := shareThenConsume(ctx, env, topic, a, b); err != nil {
		return err
	}
	// One member leaves: the other takes all 4 and reads the next 100.
	a.leave()
	aLeft = true
	b.reset()
	if err := await(ctx, 30*time.Second, []*member{b}, func() bool { return len(b.assignment()) == 4 }); err != nil {
		return err
	}
	if owned := b.assignment(); len(owned) != 4 {
		return check.Failf("30 s after the other member left, the remaining one holds %v, expected all 4", owned)
	}
	second := check.Numbered(100, "b")
	if err := produce(env, topic, second, nil); err != nil {
		return err
	}
	if err := await(ctx, 30*time.Second, []*member{b}, func() bool { return len(b.records()) >= 100 }); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // nothing more may come
	return check.CheckOnce(second, b.records(), "next 100")
}

// shareThenConsume waits until a and b split the 4 partitions, then checks that 200 records
// are consumed once in total, each by its partition's owner, and commits both members.
func shareThenConsume(ctx context.Context, env *check.Env, topic string, a, b *member) error {
	both := []*member{a, b}
	if err := await(ctx, 45*time.Second, both, func() bool { return sharedFairly(a, b, 4) }); err != nil {
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
	if err := produce(env, topic, first, nil); err != nil {
		return err
	}
	if err := await(ctx, 30*time.Second, both, func() bool { return len(consumed(a, b)) >= 200 }); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // nothing more may come
	if !slices.Equal(a.assignment(), ownedA) || !slices.Equal(b.assignment(), ownedB) {
		return check.Failf("the assignment changed while consuming: %v and %v became %v and %v", ownedA, ownedB, a.assignment(), b.assignment())
	}
	if err := check.CheckOnce(first, consumed(a, b), "first 200"); err != nil {
		return err
	}
	for _, m := range both {
		if err := m.commit(nil); err != nil {
			return err
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
	if err := produce(env, topic, sent, nil); err != nil {
		return err
	}
	if err := check.CheckAcked(sent, 0); err != nil {
		return err
	}
	if err := consumeFirst100(ctx, env, group, topic, sent); err != nil {
		return err
	}
	if err := checkCommitted(env, group, topic, 100); err != nil {
		return err
	}
	second, err := join(ctx, env, group, topic, false)
	if err != nil {
		return err
	}
	defer second.leave()
	if err := await(ctx, check.ReadDeadline, []*member{second}, func() bool { return len(second.records()) >= 50 }); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // nothing more may come
	return check.VerifyRange(second.records(), sent, 100)
}

// consumeFirst100 has a group member take the first 100 records, commit offset 100
// synchronously (MarkOffset + Commit; auto-commit is off) and leave.
func consumeFirst100(ctx context.Context, env *check.Env, group, topic string, sent []check.Rec) error {
	first, err := join(ctx, env, group, topic, false)
	if err != nil {
		return err
	}
	defer first.leave()
	if err := await(ctx, check.ReadDeadline, []*member{first}, func() bool { return len(first.records()) >= 100 }); err != nil {
		return err
	}
	got := first.records()
	if len(got) < 100 {
		return check.Failf("the first member read %d records in %s, expected 100", len(got), check.ReadDeadline)
	}
	if err := check.VerifyRange(got[:100], sent[:100], 0); err != nil {
		return err
	}
	return first.commit(func(s sarama.ConsumerGroupSession) { s.MarkOffset(topic, 0, 100, "") })
}

// checkCommitted checks with the ClusterAdmin that group's committed offset of partition 0
// is want.
func checkCommitted(env *check.Env, group, topic string, want int64) error {
	adm, err := newAdmin(env)
	if err != nil {
		return err
	}
	defer adm.Close()
	resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil {
		return check.Failf("listing the group's committed offsets: %w", err)
	}
	block := resp.GetBlock(topic, 0)
	if block == nil || !errors.Is(block.Err, sarama.ErrNoError) || block.Offset != want {
		return check.Failf("the group's committed offset is %+v, expected %d", block, want)
	}
	return nil
}
