package jobs

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
)

type jobMetrics struct {
	done     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newJobMetrics registers the job metrics, with every kind's counters at
// zero, so that "no failures yet" reads as 0 rather than as absent.
func newJobMetrics(reg prometheus.Registerer, kinds []string) *jobMetrics {
	m := &jobMetrics{
		done: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devport_jobs_total", Help: "Jobs that finished an attempt, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "devport_job_duration_seconds", Help: "How long job attempts ran, by kind.",
			Buckets: []float64{.01, .05, .1, .5, 1, 2, 5, 10, 30, 60, 300},
		}, []string{"kind"}),
	}
	for _, k := range kinds {
		for _, outcome := range []string{"completed", "failed", "cancelled"} {
			m.done.WithLabelValues(k, outcome)
		}
	}
	reg.MustRegister(m.done, m.duration)
	return m
}

func (m *jobMetrics) observe(events <-chan *river.Event) {
	for ev := range events {
		if ev == nil || ev.Job == nil {
			continue
		}
		outcome := "completed"
		switch ev.Kind {
		case river.EventKindJobFailed:
			outcome = "failed"
		case river.EventKindJobCancelled:
			outcome = "cancelled"
		}
		m.done.WithLabelValues(ev.Job.Kind, outcome).Inc()
		if ev.JobStats != nil {
			m.duration.WithLabelValues(ev.Job.Kind).Observe(ev.JobStats.RunDuration.Seconds())
		}
	}
}
