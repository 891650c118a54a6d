//! `tracing` output captured as text, for tests that assert what was (or was not) logged.

use std::io;
use std::sync::{Arc, Mutex};

/// A `tracing` writer into a shared buffer: hand a clone to a subscriber, read it with
/// [`text`](Self::text).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Forgets everything written so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// A plain-text subscriber of every level writing here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

/// Keep the returned dispatcher alive while a thread-local subscriber captures: `tracing`
/// caches each callsite's interest globally, and with a single registered dispatcher a
/// callsite first reached on another test's thread (no subscriber there) is cached as
/// "never", so this thread's subscriber would miss it. A second registered dispatcher makes
/// `tracing` ask every live dispatcher instead.
#[must_use]
pub fn ask_every_dispatcher() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
}

/// Runs `f` with `tracing` events captured on this thread; its value and the text.
pub fn with_captured_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let _second = ask_every_dispatcher();
    let logs = CapturedLogs::default();
    let value = tracing::subscriber::with_default(logs.subscriber(), f);
    (value, logs.text())
}
