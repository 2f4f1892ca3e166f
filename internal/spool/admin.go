package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// deadLetterScriptSrc moves entry ARGV[2] of stream KEYS[1] to the
// dead-letter stream KEYS[2] with message ARGV[3] and error ARGV[4], and
// acknowledges and deletes the original, in one step: an entry is never in
// both streams, nor in neither. An entry no longer pending was handled by
// another worker meanwhile and is left alone (0).
const deadLetterScriptSrc = `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', '` + messageField + `', ARGV[3], '` + sourceIDField + `', ARGV[2], '` + lastErrorField + `', ARGV[4])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
`

// redriveScriptSrc moves dead letters back: ARGV[1] is redis.dlqMaxLen, then
// pairs of a dead-letter id in KEYS[1] and the message to add to stream
// KEYS[2] in its place. An id already gone (redriven concurrently) is
// skipped, so nothing is sent twice. It stops before the stream would hold
// more than ARGV[1] entries, as an append does (the check and the moves are
// one step), and answers {moved, 1 if it stopped for room}.
const redriveScriptSrc = `
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[2])
local moved = 0
for i = 2, #ARGV, 2 do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) > 0 then
    if moved >= room then
      return {moved, 1}
    end
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('XADD', KEYS[2], '*', '` + messageField + `', ARGV[i + 1])
    moved = moved + 1
  end
end
return {moved, 0}
`

// releaseScriptSrc removes consumer ARGV[2] from group ARGV[1] of stream
// KEYS[1] if nothing is pending for it. Removing a consumer drops its pending
// entries from the group, where no one would ever deliver them again, hence
// the check in the same step.
const releaseScriptSrc = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`

// Stats describes one kind's streams.
type Stats struct {
	Kind Kind
	// Depth is the number of entries in the stream: spooled and not yet
	// committed (committed entries are deleted).
	Depth int64
	// Pending is the number of entries delivered to a worker and not yet
	// acknowledged: in flight, waiting for the database, or failed and
	// waiting to be retried.
	Pending int64
	// Consumers is the number of workers known to the group.
	Consumers int64
	// Oldest is when the oldest entry was spooled; zero when the stream is empty.
	Oldest time.Time
	// DeadLetters is the number of entries in the dead-letter stream.
	DeadLetters int64
}

// Stats reads the state of each kind's streams in one round trip.
func (s *Spool) Stats(ctx context.Context, kinds ...Kind) ([]Stats, error) {
	type cmds struct {
		depth, dead *redis.IntCmd
		oldest      *redis.XMessageSliceCmd
		pending     *redis.XPendingCmd
		consumers   *redis.XInfoConsumersCmd
	}
	all := make([]cmds, len(kinds))
	// The pipeline's own error is the first command's error; each command's
	// is looked at below, where the harmless ones are told apart.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range kinds {
			all[i] = cmds{
				depth:     p.XLen(ctx, k.Stream()),
				oldest:    p.XRangeN(ctx, k.Stream(), "-", "+", 1),
				pending:   p.XPending(ctx, k.Stream(), Group),
				consumers: p.XInfoConsumers(ctx, k.Stream(), Group),
				dead:      p.XLen(ctx, k.DeadLetters()),
			}
		}
		return nil
	})
	out := make([]Stats, len(kinds))
	for i, k := range kinds {
		c := all[i]
		st := Stats{Kind: k}
		var errs []error
		var err error
		st.Depth, err = c.depth.Result()
		errs = append(errs, err)
		st.DeadLetters, err = c.dead.Result()
		errs = append(errs, err)
		oldest, err := c.oldest.Result()
		errs = append(errs, err)
		if len(oldest) > 0 {
			st.Oldest = idTime(oldest[0].ID)
		}
		// A stream without its group yet answers NOGROUP (or "no such key")
		// to the group commands: nothing was ever delivered from it.
		if p, err := c.pending.Result(); err == nil {
			st.Pending = p.Count
		} else if !isNoGroup(err) && !isNoSuchKey(err) {
			errs = append(errs, err)
		}
		if cs, err := c.consumers.Result(); err == nil {
			st.Consumers = int64(len(cs))
		} else if !isNoGroup(err) && !isNoSuchKey(err) {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("spool: stats of %s: %w", k, err)
		}
		out[i] = st
	}
	return out, nil
}

// isNoSuchKey reports the error XINFO gives for a stream that does not exist.
func isNoSuchKey(err error) bool {
	return err != nil && err.Error() == "ERR no such key"
}

// DeadLetter is one entry of a dead-letter stream.
type DeadLetter struct {
	// ID is the entry's id in the dead-letter stream; Redrive takes it.
	ID string
	// At is when the entry was dead-lettered.
	At time.Time
	// SourceID is the id the entry had in the spool stream.
	SourceID string
	// RecordID is the event_id (or notification_id) of the payload; empty
	// when the payload cannot be read.
	RecordID string
	// LastError is why the last replay failed.
	LastError string
	// Message is the decoded message; zero when Raw is not valid JSON.
	Message Message
	// Raw is the message field as stored.
	Raw string
}

// DeadLetters lists up to limit dead letters of kind k, oldest first,
// starting after the entry id after ("" from the beginning).
func (s *Spool) DeadLetters(ctx context.Context, k Kind, after string, limit int64) ([]DeadLetter, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, k.DeadLetters(), start, "+", limit).Result()
	if err != nil {
		return nil, fmt.Errorf("spool: list dead letters of %s: %w", k, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, readDeadLetter(m))
	}
	return out, nil
}

func readDeadLetter(m redis.XMessage) DeadLetter {
	d := DeadLetter{ID: m.ID, At: idTime(m.ID)}
	d.Raw, _ = m.Values[messageField].(string)
	d.SourceID, _ = m.Values[sourceIDField].(string)
	d.LastError, _ = m.Values[lastErrorField].(string)
	if json.Unmarshal([]byte(d.Raw), &d.Message) == nil {
		if d.LastError == "" {
			d.LastError = d.Message.LastError
		}
		var ids struct {
			EventID        string `json:"event_id"`
			NotificationID string `json:"notification_id"`
		}
		if json.Unmarshal(d.Message.Payload, &ids) == nil {
			d.RecordID = ids.EventID + ids.NotificationID
		}
	}
	return d
}

// Redrive moves the dead letters with the given ids back to the spool stream
// of kind k, with their retry count reset (their last error is kept for the
// record), and returns how many it moved; ids not found are skipped. It
// never fills the stream past redis.dlqMaxLen, which keeps room for live
// writes' outages: when the stream is full it stops, leaves the rest in the
// dead-letter stream and returns ErrFull (wrapped) with the count moved.
func (s *Spool) Redrive(ctx context.Context, k Kind, ids []string) (int, error) {
	moved := 0
	for chunk := range slices.Chunk(ids, 500) {
		var msgs []redis.XMessage
		for _, id := range chunk {
			m, err := s.rdb.XRangeN(ctx, k.DeadLetters(), id, id, 1).Result()
			if err != nil {
				return moved, fmt.Errorf("spool: read dead letter %s: %w", id, err)
			}
			msgs = append(msgs, m...)
		}
		n, err := s.redrive(ctx, k, msgs)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// RedriveAll moves every dead letter of kind k that exists when it starts
// back to the spool stream, and returns how many it moved. Entries
// dead-lettered while it runs are left for a later call, so it cannot chase
// a poison entry round and round. Like Redrive it stops with ErrFull at
// redis.dlqMaxLen.
func (s *Spool) RedriveAll(ctx context.Context, k Kind) (int, error) {
	last, err := s.rdb.XRevRangeN(ctx, k.DeadLetters(), "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("spool: read dead letters of %s: %w", k, err)
	}
	if len(last) == 0 {
		return 0, nil
	}
	end := last[0].ID
	moved := 0
	for {
		msgs, err := s.rdb.XRangeN(ctx, k.DeadLetters(), "-", end, 500).Result()
		if err != nil {
			return moved, fmt.Errorf("spool: read dead letters of %s: %w", k, err)
		}
		if len(msgs) == 0 {
			return moved, nil
		}
		n, err := s.redrive(ctx, k, msgs)
		moved += n
		if err != nil {
			return moved, err
		}
	}
}

func (s *Spool) redrive(ctx context.Context, k Kind, msgs []redis.XMessage) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2*len(msgs))
	for _, m := range msgs {
		d := readDeadLetter(m)
		msg := d.Raw
		if d.Message.Type != "" {
			d.Message.RetryCount = 0
			d.Message.LastError = d.LastError
			b, err := json.Marshal(d.Message)
			if err != nil {
				return 0, fmt.Errorf("spool: encode redriven message: %w", err)
			}
			msg = string(b)
		}
		args = append(args, m.ID, msg)
	}
	args = append([]any{s.maxLen}, args...)
	res, err := s.redriveScript.Run(ctx, s.rdb, []string{k.DeadLetters(), k.Stream()}, args...).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, fmt.Errorf("spool: redrive %d %s: %w", len(msgs), k, err)
	}
	if res[1] == 1 {
		return int(res[0]), fmt.Errorf("spool: redrive %s: %w at redis.dlqMaxLen (%d entries); the other dead letters stay where they are",
			k, ErrFull, s.maxLen)
	}
	return int(res[0]), nil
}
