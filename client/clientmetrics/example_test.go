package clientmetrics_test

import (
	"context"
	"fmt"
	"log"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/client/clientmetrics"
)

// The host registers the emitter's collector with its own registry.
func ExampleNew() {
	c, err := client.New("http://data-storage.platform.svc:8080")
	if err != nil {
		log.Fatal(err)
	}
	em := client.NewEmitter(c, client.EmitterOptions{BufferSize: 100})
	defer em.Close(context.Background())

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(clientmetrics.New(em, map[string]string{"emitter": "audit"}))

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Println(mf.GetName(), len(m.GetLabel()), v)
		}
	}
	// Output:
	// datastorage_emitter_buffer_capacity_events 1 100
	// datastorage_emitter_buffered_events 1 0
	// datastorage_emitter_events_dropped_total 2 0
	// datastorage_emitter_events_dropped_total 2 0
	// datastorage_emitter_events_dropped_total 2 0
	// datastorage_emitter_events_dropped_total 2 0
	// datastorage_emitter_events_failed_total 2 0
	// datastorage_emitter_events_failed_total 2 0
	// datastorage_emitter_events_failed_total 2 0
	// datastorage_emitter_events_queued_total 1 0
	// datastorage_emitter_events_retried_total 1 0
	// datastorage_emitter_events_sent_total 1 0
}
