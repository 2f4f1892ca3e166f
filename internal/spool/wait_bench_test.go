package spool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/testenv"
)

// BenchmarkAppendWait measures what redis.minReplicas costs a spooled write: the same appends
// to a master with one replica on loopback, without WAIT (0) and with it (1), for a single
// event and a group-commit batch of 100. Each op is one Append; events/s = batch / (ns/op).
//
//	go test -run '^$' -bench AppendWait -benchtime 3s ./internal/spool/
func BenchmarkAppendWait(b *testing.B) {
	h := testenv.NewRedisHA(b)
	for _, replicas := range []int{0, 1} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("minReplicas=%d/batch=%d", replicas, batch), func(b *testing.B) {
				rdb := redis.NewClient(&redis.Options{Addr: h.Servers[0].Addr(), ReadTimeout: 5 * time.Second})
				defer rdb.Close()
				sp := spool.New(rdb, spool.Options{
					MaxLen: 1 << 40, Metrics: spool.NewMetrics(prometheus.NewRegistry()),
					MinReplicas: replicas, WaitTimeout: time.Second,
				})
				ctx := context.Background()
				events := newEvents(batch)
				for b.Loop() {
					if err := sp.Append(ctx, events); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				_ = rdb.Del(ctx, spool.Events.Stream()).Err()
			})
		}
	}
}
