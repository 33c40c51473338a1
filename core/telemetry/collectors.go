package telemetry

import "github.com/prometheus/client_golang/prometheus"

// ipamCollectors makes spiderpool_ipam_* collectors and registers each on
// reg as it is made; err is the first registration refused, after which
// nothing more is registered.
type ipamCollectors struct {
	reg prometheus.Registerer
	err error
}

func (s *ipamCollectors) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: namespace, Subsystem: "ipam", Name: name, Help: help}
}

func register[C prometheus.Collector](s *ipamCollectors, c C) C {
	if s.err == nil {
		s.err = s.reg.Register(c)
	}
	return c
}

func (s *ipamCollectors) counter(name, help string) prometheus.Counter {
	return register(s, prometheus.NewCounter(prometheus.CounterOpts(s.opts(name, help))))
}

func (s *ipamCollectors) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return register(s, prometheus.NewCounterVec(prometheus.CounterOpts(s.opts(name, help)), labels))
}

func (s *ipamCollectors) gauge(name, help string) prometheus.Gauge {
	return register(s, prometheus.NewGauge(prometheus.GaugeOpts(s.opts(name, help))))
}

func (s *ipamCollectors) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return register(s, prometheus.NewGaugeVec(prometheus.GaugeOpts(s.opts(name, help)), labels))
}

func (s *ipamCollectors) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	o := s.opts(name, help)
	return register(s, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets}, labels))
}
