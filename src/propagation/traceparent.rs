//! The caller's trace context and baggage read straight from the request headers: the default
//! path of the layer, run on every request.
//!
//! The SDK's composite propagator gets there too, through a dynamic extractor, three header
//! lookups by string, a `Vec` of the split `traceparent` and a hex parse per field. This reads
//! the fixed-offset fields of `traceparent` in place, and touches `tracestate` and `baggage` only
//! when they are present. It follows the W3C Trace Context rules (Level 2, "Processing model")
//! to the letter, so it refuses a few headers the SDK's parser accepts: a version-00 header with
//! anything after the flags, ids shorter than their fixed width.

use std::str::FromStr;

use http::header::{HeaderMap, HeaderName};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::BaggagePropagator;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Length of a version-00 `traceparent`: `vv-{32}-{16}-ff`.
const LEN: usize = 55;

/// The caller's context: its span (from `traceparent` and `tracestate`) and its baggage, as the
/// W3C trace-context and baggage propagators would extract them.
pub(crate) fn extract(headers: &HeaderMap) -> Context {
    let mut cx = Context::new();
    // Two `traceparent` headers cannot both be the parent: the W3C rules say restart the trace.
    let mut values = headers.get_all(&TRACEPARENT).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        if let Some((trace_id, span_id, flags)) = parse(value.as_bytes()) {
            let state = trace_state(headers);
            cx = cx
                .with_remote_span_context(SpanContext::new(trace_id, span_id, flags, true, state));
        }
    }
    if headers.contains_key(&BAGGAGE) {
        // Baggage has its own limits and percent-decoding rules; the SDK's propagator applies
        // them, and the cost is only paid when a caller sends baggage.
        cx = baggage().extract_with_context(&cx, &HeaderExtractor(headers));
    }
    cx
}

/// Injects the W3C headers of `cx` into an outgoing request: `traceparent` (and `tracestate`
/// when there is one) from its span, and `baggage`. `prepared_baggage` is the `baggage` header
/// of a context that holds nothing but the tenant, made once per tenant: the common case costs
/// no encoding and no allocation for it.
pub(crate) fn inject(
    cx: &Context,
    headers: &mut HeaderMap,
    prepared_baggage: Option<&http::HeaderValue>,
) {
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        let mut value = [0u8; LEN];
        value[..3].copy_from_slice(b"00-");
        write_hex(&mut value[3..35], &sc.trace_id().to_bytes());
        value[35] = b'-';
        write_hex(&mut value[36..52], &sc.span_id().to_bytes());
        value[52] = b'-';
        write_hex(
            &mut value[53..55],
            &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
        );
        if let Ok(v) = http::HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT.clone(), v);
        }
        let state = sc.trace_state().header();
        if !state.is_empty() {
            if let Ok(v) = http::HeaderValue::try_from(state) {
                headers.insert(TRACESTATE.clone(), v);
            }
        }
    }
    match prepared_baggage {
        Some(value) => {
            headers.insert(BAGGAGE.clone(), value.clone());
        }
        None => baggage().inject_context(cx, &mut opentelemetry_http::HeaderInjector(headers)),
    }
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

fn baggage() -> &'static BaggagePropagator {
    static BAGGAGE_PROPAGATOR: std::sync::OnceLock<BaggagePropagator> = std::sync::OnceLock::new();
    BAGGAGE_PROPAGATOR.get_or_init(BaggagePropagator::new)
}

/// `tracestate`, its headers joined as one list (W3C: several headers combine); an invalid one
/// is dropped, the trace kept.
fn trace_state(headers: &HeaderMap) -> TraceState {
    let mut values = headers.get_all(&TRACESTATE).iter();
    let Some(first) = values.next() else {
        return TraceState::NONE;
    };
    let parsed = match values.next() {
        None => first.to_str().ok().map(TraceState::from_str),
        Some(second) => {
            let mut joined = String::from(first.to_str().unwrap_or_default());
            for value in std::iter::once(second).chain(values) {
                joined.push(',');
                joined.push_str(value.to_str().unwrap_or_default());
            }
            Some(TraceState::from_str(&joined))
        }
    };
    parsed.and_then(Result::ok).unwrap_or(TraceState::NONE)
}

/// The trace id, parent span id and sampled flag of a `traceparent` value, or `None` where the
/// W3C rules say to start a new trace.
pub(crate) fn parse(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = trim_ows(value);
    if value.len() < LEN {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    // `ff` is forbidden; version 00 is exactly 55 characters; a later version may append
    // fields, after a dash.
    if version == 0xff
        || (version == 0 && value.len() != LEN)
        || (value.len() > LEN && value[LEN] != b'-')
    {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex_u128(&value[3..35])?;
    let span_id = hex_u64(&value[36..52])?;
    let flags = hex_byte(value[53], value[54])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    // Only the sampled bit has a meaning; the others are reserved and not passed on.
    Some((
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// Optional whitespace around a header value (RFC 9110), which a proxy may leave in.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Lowercase hex digit values; anything else (uppercase included: the W3C grammar's
/// `HEXDIGLC`) maps to [`NOT_HEX`].
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xf0;

/// The value of up to 16 lowercase hex digits, checked once at the end rather than per digit.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    let mut seen = 0u8;
    for &d in digits {
        let v = HEX[usize::from(d)];
        seen |= v;
        n = n << 4 | u64::from(v & 0x0f);
    }
    (seen & NOT_HEX == 0).then_some(n)
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    hex_u64(&[high, low]).map(|n| n as u8)
}

fn hex_u128(digits: &[u8]) -> Option<u128> {
    let (high, low) = digits.split_at(digits.len() - 16);
    Some(u128::from(hex_u64(high)?) << 64 | u128::from(hex_u64(low)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "12345678901234567890123456789012";
    const SPAN: &str = "1234567890123456";

    fn accepts(value: &str) -> bool {
        parse(value.as_bytes()).is_some()
    }

    /// The cases of the W3C trace-context test suite (`test/test.py`) on `traceparent`.
    #[test]
    fn w3c_test_suite_vectors() {
        let valid = [
            format!("00-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-00"),
            // Unknown flags are ignored, not refused.
            format!("00-{TRACE}-{SPAN}-09"),
            // A future version may add fields after a dash.
            format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
            format!("cc-{TRACE}-{SPAN}-01"),
            // Optional whitespace around the value.
            format!(" 00-{TRACE}-{SPAN}-01\t"),
        ];
        for v in &valid {
            assert!(accepts(v), "refused {v:?}");
        }
        let invalid = [
            // Version: ff, non-hex, wrong width, uppercase.
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("0g-{TRACE}-{SPAN}-01"),
            format!("0-{TRACE}-{SPAN}-01"),
            format!("000-{TRACE}-{SPAN}-01"),
            format!("CC-{TRACE}-{SPAN}-01"),
            // Version 00 has exactly four fields.
            format!("00-{TRACE}-{SPAN}-01-what-the-future-will-not-be-like"),
            format!("00-{TRACE}-{SPAN}-01-"),
            // A later version's extra fields start with a dash.
            format!("cc-{TRACE}-{SPAN}-01.what-the-future-will-not-be-like"),
            // Trace id: all zero, uppercase, too short, too long, illegal characters.
            format!("00-00000000000000000000000000000000-{SPAN}-01"),
            format!("00-ABCDEF78901234567890123456789012-{SPAN}-01"),
            format!("00-1234567890123456789012345678901-{SPAN}-01"),
            format!("00-123456789012345678901234567890123-{SPAN}-01"),
            format!("00-1234567890123456789012345678901.-{SPAN}-01"),
            // Parent id: all zero, uppercase, wrong width, illegal characters.
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-ABCDEF7890123456-01"),
            format!("00-{TRACE}-123456789012345-01"),
            format!("00-{TRACE}-12345678901234567-01"),
            format!("00-{TRACE}-123456789012345.-01"),
            // Flags: wrong width, uppercase, illegal characters, missing.
            format!("00-{TRACE}-{SPAN}-1"),
            format!("00-{TRACE}-{SPAN}-001"),
            format!("00-{TRACE}-{SPAN}-0A"),
            format!("00-{TRACE}-{SPAN}-.1"),
            format!("00-{TRACE}-{SPAN}"),
            format!("00-{TRACE}-{SPAN}-"),
            // Wrong separators, nothing at all.
            format!("00_{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}_{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}_01"),
            String::new(),
        ];
        for v in &invalid {
            assert!(!accepts(v), "accepted {v:?}");
        }
    }

    #[test]
    fn fields_are_read_at_their_offsets() {
        let (trace, span, flags) =
            parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert_eq!(
            trace,
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
        );
        assert_eq!(span, SpanId::from(0x00f0_67aa_0ba9_02b7));
        assert_eq!(flags, TraceFlags::SAMPLED);
        let (_, _, flags) =
            parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert_eq!(flags, TraceFlags::default());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn two_traceparents_restart_the_trace() {
        let tp = format!("00-{TRACE}-{SPAN}-01");
        let cx = extract(&headers(&[("traceparent", &tp), ("traceparent", &tp)]));
        assert!(!cx.has_active_span());
        let cx = extract(&headers(&[("traceparent", &tp)]));
        assert!(cx.span().span_context().is_remote());
    }

    #[test]
    fn tracestate_headers_combine_and_a_bad_one_is_dropped() {
        let tp = format!("00-{TRACE}-{SPAN}-01");
        let cx = extract(&headers(&[
            ("traceparent", &tp),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]));
        let state = cx.span().span_context().trace_state().clone();
        assert_eq!(state.get("a"), Some("1"));
        assert_eq!(state.get("b"), Some("2"));
        let cx = extract(&headers(&[("traceparent", &tp), ("tracestate", "=bad=")]));
        assert!(cx.span().span_context().is_valid());
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }
}

#[cfg(test)]
mod injection {
    use super::*;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn injects_what_the_sdk_propagators_inject() {
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_str("a=1,b=2").unwrap(),
        );
        let cx = Context::new().with_remote_span_context(sc).with_baggage([
            KeyValue::new("tenant.id", "acme"),
            KeyValue::new("k", "a b"),
        ]);
        let mut ours = HeaderMap::new();
        inject(&cx, &mut ours, None);
        let mut sdk = HeaderMap::new();
        let mut injector = opentelemetry_http::HeaderInjector(&mut sdk);
        TraceContextPropagator::new().inject_context(&cx, &mut injector);
        BaggagePropagator::new().inject_context(&cx, &mut injector);
        assert_eq!(ours, sdk);
        assert_eq!(
            ours["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        // Read back, it is the same context.
        let back = extract(&ours);
        assert_eq!(
            back.span().span_context().span_id(),
            SpanId::from(0x00f0_67aa_0ba9_02b7)
        );

        let mut prepared = HeaderMap::new();
        let value = http::HeaderValue::from_static("tenant.id=acme");
        inject(&Context::new(), &mut prepared, Some(&value));
        assert_eq!(prepared["baggage"], "tenant.id=acme");
        assert!(!prepared.contains_key("traceparent"));
    }
}

#[cfg(test)]
mod agreement {
    use super::*;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use proptest::prelude::*;

    fn sdk(value: &str) -> Option<SpanContext> {
        let mut map = HeaderMap::new();
        map.insert("traceparent", value.parse().ok()?);
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&map));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    fn ours(value: &str) -> Option<SpanContext> {
        let mut map = HeaderMap::new();
        map.insert("traceparent", value.parse().ok()?);
        let cx = extract(&map);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    proptest! {
        /// Every well-formed header reads as the SDK reads it.
        #[test]
        fn well_formed_headers_read_as_the_sdk_reads_them(
            version in 0u8..=254,
            trace in any::<u128>(),
            span in any::<u64>(),
            flags in any::<u8>(),
        ) {
            let value = format!("{version:02x}-{trace:032x}-{span:016x}-{flags:02x}");
            prop_assert_eq!(ours(&value), sdk(&value));
        }

        /// Whatever this parser accepts, the SDK's accepts as the same context: it is only ever
        /// stricter.
        #[test]
        fn never_accepts_what_the_sdk_refuses(value in "[0-9a-fA-Fx. -]{50,70}") {
            if let Some(ours) = ours(&value) {
                prop_assert_eq!(Some(ours), sdk(&value));
            }
        }
    }
}
