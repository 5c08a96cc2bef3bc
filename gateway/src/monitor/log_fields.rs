//! The text log's `name=value` fields, written without the formatting
//! machinery where that is safe to do by hand.
//!
//! `tracing_subscriber`'s own field formatter sends every field, numbers
//! and plain strings included, through a three-argument `write!`; on the
//! access line (sixteen fields, once per request) that was about a tenth
//! of a bare proxied request's instructions. This one writes the same
//! bytes: integers, booleans and strings that need no escaping are copied
//! straight in, and everything else (escaped strings, floats, `Display`
//! and `Debug` values, the `message`, errors, `r#` names, colours) is left
//! to the default formatter, field by field. A test holds the two to the
//! same output.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// A drop-in for `tracing_subscriber::fmt::format::DefaultFields`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextFields;

impl<'a> MakeVisitor<Writer<'a>> for TextFields {
    type Visitor = TextVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> TextVisitor<'a> {
        TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

pub struct TextVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    /// Whether `field` may be written by hand: not one the default
    /// formatter treats specially, and no colour codes to add.
    fn plain(&self, field: &Field) -> bool {
        let name = field.name();
        self.result.is_ok()
            && !self.writer.has_ansi_escapes()
            && name != "message"
            && !name.starts_with("r#")
            && !name.starts_with("log.")
    }

    /// `name=` after the separating space.
    fn start(&mut self, field: &Field) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn raw(&mut self, field: &Field, value: &str) {
        self.result = self
            .start(field)
            .and_then(|()| self.writer.write_str(value));
    }

    /// The field as the default formatter writes it; `log.` metadata is
    /// left out without a separating space, as the default formatter does.
    fn by_default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        self.is_empty = false;
    }
}

/// Whether `Debug` prints `value` as itself between quotes: printable
/// ASCII other than the quote and the backslash.
fn quotes_verbatim(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.plain(field) && quotes_verbatim(value) {
            self.result = self.start(field).and_then(|()| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        } else {
            self.by_default(field, |d| d.record_str(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.plain(field) {
            self.raw(field, itoa::Buffer::new().format(value));
        } else {
            self.by_default(field, |d| d.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.plain(field) {
            self.raw(field, itoa::Buffer::new().format(value));
        } else {
            self.by_default(field, |d| d.record_i64(field, value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.plain(field) {
            self.raw(field, if value { "true" } else { "false" });
        } else {
            self.by_default(field, |d| d.record_bool(field, value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.by_default(field, |d| d.record_f64(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default(field, |d| d.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.by_default(field, |d| d.record_debug(field, value));
    }
}

impl VisitOutput<fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut held) = self.0.lock() {
                held.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure;
    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream \"refused\"")
        }
    }
    impl std::error::Error for Failure {}

    /// Every kind of field the gateway logs, and the awkward ones.
    fn emit() {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 8443).into();
        let none: Option<&str> = None;
        tracing::info!(
            target: "portcullis::access",
            request_id = %"01J9ZK",
            method = %http::Method::POST,
            path = "/orders/7",
            quoted = "say \"hi\"\\",
            unicode = "caf\u{e9} \u{1b}[31m\tend",
            empty = "",
            partner = none,
            key_id = Some("k-1"),
            peer_ip = Some(tracing::field::display(addr.ip())),
            status = 201u16,
            attempts = 1u8,
            big = u64::MAX,
            negative = -42i64,
            duration_ms = 1.25f64,
            whole_ms = 3.0f64,
            ok = true,
            debug = ?vec!["a", "b"],
            r#type = "raw name",
        );
        tracing::warn!(
            error = &Failure as &(dyn std::error::Error + 'static),
            "upstream {} failed",
            "up"
        );
        tracing::error!("message only with \"quotes\"");
        let span = tracing::info_span!("conn", peer = "10.0.0.1", n = 3u64);
        let _in = span.enter();
        tracing::info!(inside = "span");
    }

    fn lines<N>(fields: N, ansi: bool) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(ansi)
            .with_writer(out.clone())
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn writes_exactly_what_the_default_formatter_writes() {
        let ours = lines(TextFields, false);
        let theirs = lines(DefaultFields::new(), false);
        assert_eq!(ours, theirs);
        // The comparison saw every field, not an empty log.
        for part in [
            "path=\"/orders/7\"",
            "status=201",
            "big=18446744073709551615",
            "negative=-42",
            "ok=true",
            "request_id=01J9ZK",
            "quoted=\"say \\\"hi\\\"\\\\\"",
            "conn{peer=\"10.0.0.1\" n=3}",
        ] {
            assert!(ours.contains(part), "{part} missing from\n{ours}");
        }
        assert!(!ours.contains("partner="), "{ours}");
    }

    #[test]
    fn coloured_output_is_the_default_formatters_too() {
        assert_eq!(lines(TextFields, true), lines(DefaultFields::new(), true));
    }
}
