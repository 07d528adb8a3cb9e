// Command otelhttp-peer is Go's reference HTTP instrumentation (otelhttp, with the W3C
// tracecontext and baggage propagators) as a peer of a tenant-otel service, for
// tests/stack_otelhttp.rs. Built by .ci/build-stack.sh, pinned by go.mod.
//
//	otelhttp-peer client -url URL -tenant T [-header]
//	    POSTs a question to URL (rag_service's /query) through otelhttp.NewTransport, with the
//	    tenant in W3C baggage (tenant.id=T) and, with -header, in x-tenant-id too. Prints one
//	    JSON line: the status, the traceparent and baggage that went over the wire, and the
//	    spans this program recorded.
//	otelhttp-peer server -addr 127.0.0.1:0
//	    Serves GET /search through otelhttp.NewHandler. The first line printed is
//	    "listening on http://ADDR"; then one JSON line per request: the traceparent and
//	    baggage it received, the parent span id of its SERVER span and the tenant.id baggage
//	    member as the propagators extracted them.
//
// Spans also go to stderr through the stdout exporter, for a person reading the log.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// recorded is what the program says about one span it ended.
type recorded struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	TraceID      string `json:"trace_id"`
	SpanID       string `json:"span_id"`
	ParentSpanID string `json:"parent_span_id"`
}

// recorder keeps every ended span, so the program can print the ids it really exported.
type recorder struct {
	mu    sync.Mutex
	spans []recorded
}

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *recorder) Shutdown(context.Context) error                  { return nil }
func (r *recorder) ForceFlush(context.Context) error                { return nil }
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, describe(s))
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.spans
	r.spans = nil
	return out
}

func describe(s sdktrace.ReadOnlySpan) recorded {
	parent := ""
	if s.Parent().IsValid() {
		parent = s.Parent().SpanID().String()
	}
	return recorded{
		Name:         s.Name(),
		Kind:         s.SpanKind().String(),
		TraceID:      s.SpanContext().TraceID().String(),
		SpanID:       s.SpanContext().SpanID().String(),
		ParentSpanID: parent,
	}
}

// setup installs the W3C propagators and a tracer provider that samples everything and hands
// each ended span to rec too, when there is one (the client's: one request, a few spans; the
// server keeps none, so a long run holds no growing list).
func setup(service string, rec *recorder) (*sdktrace.TracerProvider, error) {
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
	if err != nil {
		return nil, err
	}
	options := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(exporter),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	}
	if rec != nil {
		options = append(options, sdktrace.WithSpanProcessor(rec))
	}
	tp := sdktrace.NewTracerProvider(options...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	return tp, nil
}

// wire records the headers a request really carried when it left (or arrived).
type wire struct {
	next        http.RoundTripper
	traceparent string
	baggage     string
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.traceparent = req.Header.Get("traceparent")
	w.baggage = req.Header.Get("baggage")
	return w.next.RoundTrip(req)
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	url := fs.String("url", "", "rag_service's /query URL, query string included")
	tenant := fs.String("tenant", "", "the tenant, sent as W3C baggage tenant.id")
	header := fs.Bool("header", false, "also send the tenant in x-tenant-id")
	_ = fs.Parse(args)
	if *url == "" || *tenant == "" {
		return fmt.Errorf("client needs -url and -tenant")
	}
	rec := &recorder{}
	tp, err := setup("otelhttp-peer-client", rec)
	if err != nil {
		return err
	}
	member, err := baggage.NewMember("tenant.id", *tenant)
	if err != nil {
		return fmt.Errorf("tenant %q in baggage: %w", *tenant, err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		return err
	}
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	w := &wire{next: http.DefaultTransport}
	httpClient := http.Client{Transport: otelhttp.NewTransport(w), Timeout: 30 * time.Second}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url,
		strings.NewReader(`{"question":"what is RAG?"}`))
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	if *header {
		req.Header.Set("x-tenant-id", *tenant)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if err := tp.Shutdown(context.Background()); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"mode":        "client",
		"status":      res.StatusCode,
		"body":        string(body),
		"traceparent": w.traceparent,
		"baggage":     w.baggage,
		"spans":       rec.take(),
	})
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "where to listen")
	_ = fs.Parse(args)
	if _, err := setup("otelhttp-peer-server", nil); err != nil {
		return err
	}
	var out sync.Mutex
	search := func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		parent := ""
		if ro, ok := span.(sdktrace.ReadOnlySpan); ok && ro.Parent().IsValid() {
			parent = ro.Parent().SpanID().String()
		}
		tenant := baggage.FromContext(r.Context()).Member("tenant.id").Value()
		line := map[string]any{
			"mode":           "server",
			"path":           r.URL.Path,
			"traceparent":    r.Header.Get("traceparent"),
			"baggage":        r.Header.Get("baggage"),
			"trace_id":       span.SpanContext().TraceID().String(),
			"span_id":        span.SpanContext().SpanID().String(),
			"parent_span_id": parent,
			"tenant":         tenant,
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"documents": 3, "tenant": tenant})
		out.Lock()
		defer out.Unlock()
		_ = json.NewEncoder(os.Stdout).Encode(line)
	}
	mux := http.NewServeMux()
	mux.Handle("/search", otelhttp.NewHandler(http.HandlerFunc(search), "GET /search"))
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", listener.Addr())
	return http.Serve(listener, mux)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: otelhttp-peer client -url URL -tenant T [-header] | server [-addr ADDR]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "client":
		err = client(os.Args[2:])
	case "server":
		err = server(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "otelhttp-peer:", err)
		os.Exit(1)
	}
}
